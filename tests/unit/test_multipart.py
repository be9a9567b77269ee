"""The streaming multipart/related reader: Content-Type parsing, framing, limits, chunking."""

from __future__ import annotations

import re
from itertools import pairwise

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from dicomweb_core.errors import MediaTypeError, MultipartError
from dicomweb_core.multipart import (
    MAX_BOUNDARY_LENGTH,
    MAX_TRANSPORT_PADDING,
    MultipartRelatedReader,
    PartData,
    PartEnd,
    PartStart,
    boundary_from_content_type,
    parse_content_type,
)

B = b"MIMEboundary-42"

Parts = list[tuple[dict[str, str], bytes]]


def collect(events: list[PartStart | PartData | PartEnd]) -> Parts:
    """Reassemble events into (headers, body) pairs, checking the event grammar."""
    parts: Parts = []
    body: list[bytes] | None = None
    for ev in events:
        if isinstance(ev, PartStart):
            assert body is None, "PartStart inside a part"
            parts.append((ev.headers, b""))
            body = []
        elif isinstance(ev, PartData):
            assert body is not None, "PartData outside a part"
            assert len(ev.data) > 0, "zero-length PartData"
            body.append(bytes(ev.data))
        else:
            assert body is not None, "PartEnd outside a part"
            parts[-1] = (parts[-1][0], b"".join(body))
            body = None
    assert body is None, "part not ended"
    return parts


def parse(body: bytes, chunks: list[int] | None = None, boundary: bytes = B, **kw: object) -> Parts:
    reader = MultipartRelatedReader(boundary, **kw)  # type: ignore[arg-type]
    events: list[PartStart | PartData | PartEnd] = []
    if chunks is None:
        events += reader.feed(body)
    else:
        prev = 0
        for cut in [*chunks, len(body)]:
            events += reader.feed(body[prev:cut])
            prev = cut
    assert reader.done
    events += reader.close()
    return collect(events)


def build(parts: Parts, boundary: bytes = B, preamble: bytes = b"", epilogue: bytes = b"\r\n") -> bytes:
    out = [preamble]
    for i, (headers, body) in enumerate(parts):
        out.append(b"--" + boundary + b"\r\n" if i == 0 and not preamble else b"\r\n--" + boundary + b"\r\n")
        out.extend(f"{k}: {v}\r\n".encode("latin-1") for k, v in headers.items())
        out.append(b"\r\n" + body)
    out.append(b"\r\n--" + boundary + b"--" + epilogue)
    return b"".join(out)


# ---------------------------------------------------------------- Content-Type


def test_parse_content_type_lowercases_and_unquotes() -> None:
    media, params = parse_content_type(
        'Multipart/Related; Type="application/dicom"; BOUNDARY=abc ;start="<a;b=c>"'
    )
    assert media == "multipart/related"
    assert params == {"type": "application/dicom", "boundary": "abc", "start": "<a;b=c>"}


def test_parse_content_type_backslash_escapes_and_odd_input() -> None:
    assert parse_content_type('a/b; x="q\\"uo\\\\te"; y')[1] == {"x": 'q"uo\\te'}
    assert parse_content_type("") == ("", {})
    assert parse_content_type("   ") == ("", {})
    assert parse_content_type(';;;=;"') == ("", {})
    assert parse_content_type('a/b; x="unterminated') == ("a/b", {"x": "unterminated"})
    assert parse_content_type("a/b; x=1; x=2")[1] == {"x": "1"}


@pytest.mark.parametrize(
    "value",
    [
        'multipart/related; type="application/dicom"; boundary="MIMEboundary-42"',
        "multipart/related; type=application/dicom; boundary=MIMEboundary-42",
        'multipart/related;boundary=MIMEboundary-42;type="application/dicom";start="<1@x>";'
        'start-info="-x";transfer-syntax=1.2.840.10008.1.2.1',
        "MULTIPART/RELATED ;  boundary = MIMEboundary-42  ",
    ],
)
def test_boundary_quoted_and_unquoted(value: str) -> None:
    assert boundary_from_content_type(value) == B


def test_boundary_quoted_with_separators_inside() -> None:
    assert boundary_from_content_type('multipart/related; boundary="a;b=c d"') == b"a;b=c d"


def test_boundary_wrong_media_type_is_415() -> None:
    with pytest.raises(MediaTypeError) as exc:
        boundary_from_content_type("multipart/form-data; boundary=x")
    assert exc.value.status == 415
    with pytest.raises(MediaTypeError):
        boundary_from_content_type("")


@pytest.mark.parametrize(
    "value",
    [
        'multipart/related; type="application/dicom"',
        "multipart/related; boundary=",
        'multipart/related; boundary=""',
        "multipart/related; boundary=" + "x" * (MAX_BOUNDARY_LENGTH + 1),
        "multipart/related; boundary=\u20ac",
    ],
)
def test_boundary_missing_empty_or_too_long_is_400(value: str) -> None:
    with pytest.raises(MultipartError) as exc:
        boundary_from_content_type(value)
    assert exc.value.status == 400


@pytest.mark.parametrize("length", [70, 73, 200, MAX_BOUNDARY_LENGTH])
def test_boundaries_longer_than_rfc_2046_are_accepted_up_to_the_cap(length: int) -> None:
    boundary = ("0123456789abcdef-" * 20)[:length]
    assert boundary_from_content_type(f"multipart/related; boundary={boundary}") == boundary.encode()
    parts: Parts = [({"content-type": "application/dicom"}, b"\r\n--" + boundary[:-1].encode() + b"x" * 5000)]
    assert parse(build(parts, boundary.encode()), [7, 100], boundary.encode()) == parts


def test_boundary_past_the_cap_says_how_long_it_is_and_what_is_accepted() -> None:
    with pytest.raises(MultipartError, match=f"is {MAX_BOUNDARY_LENGTH + 1} characters long; at most"):
        boundary_from_content_type("multipart/related; boundary=" + "b" * (MAX_BOUNDARY_LENGTH + 1))


def test_orthanc_style_two_uuid_boundary_parses() -> None:
    # Orthanc's DICOMweb client: two UUIDs joined by "-" (73 characters).
    boundary = b"7b3c9f2e-1d4a-4e5b-9c6d-0a1b2c3d4e5f-8f7e6d5c-4b3a-4291-8e7f-6a5b4c3d2e1f"
    assert len(boundary) == 73
    parts: Parts = [({"content-type": "application/dicom"}, b"DICM" * 1000)] * 3
    assert parse(build(parts, boundary), [5, 80, 81], boundary) == parts


# ---------------------------------------------------------------- framing


def test_single_part_with_content_type() -> None:
    body = build([({"Content-Type": "application/dicom; transfer-syntax=1.2.3"}, b"DICM")])
    reader = MultipartRelatedReader(B)
    events = reader.feed(body)
    start = events[0]
    assert isinstance(start, PartStart)
    assert start.content_type == "application/dicom; transfer-syntax=1.2.3"
    assert start.media_type == "application/dicom"
    assert [type(e) for e in events] == [PartStart, PartData, PartEnd]
    assert reader.done
    assert reader.close() == []


def test_part_without_content_type_defaults_to_application_dicom() -> None:
    events = MultipartRelatedReader(B).feed(build([({"Content-Location": "x"}, b"abc")]))
    start = events[0]
    assert isinstance(start, PartStart)
    assert start.content_type == "application/dicom"
    assert start.media_type == "application/dicom"
    assert start.headers == {"content-location": "x"}
    other = MultipartRelatedReader(B, default_content_type="application/octet-stream")
    start = other.feed(build([({}, b"abc")]))[0]
    assert isinstance(start, PartStart)
    assert start.media_type == "application/octet-stream"


def test_several_parts_in_order() -> None:
    parts: Parts = [({"content-type": f"application/dicom; n={i}"}, bytes([i]) * (i * 100)) for i in range(5)]
    assert parse(build(parts)) == parts


def test_empty_part_body() -> None:
    parts: Parts = [({"content-type": "application/dicom"}, b""), ({}, b""), ({"x": "y"}, b"z")]
    assert parse(build(parts)) == parts


def test_part_with_body_omitted_after_headers() -> None:
    # The header block's last CRLF doubles as the delimiter's CRLF: empty body.
    body = b"--" + B + b"\r\nContent-Type: a/b\r\n\r\n--" + B + b"\r\n\r\n--" + B + b"--"
    assert parse(body) == [({"content-type": "a/b"}, b""), ({}, b"")]
    for cut in range(1, len(body)):
        assert parse(body, [cut]) == [({"content-type": "a/b"}, b""), ({}, b"")]


def test_preamble_and_epilogue_are_ignored() -> None:
    parts: Parts = [({"content-type": "application/dicom"}, b"payload")]
    body = build(parts, preamble=b"This is a preamble.\r\n--not-it\r\n", epilogue=b"\r\nepilogue --" + B)
    reader = MultipartRelatedReader(B)
    events = reader.feed(body)
    assert reader.done
    assert reader.feed(b"more epilogue\r\n--" + B + b"\r\n\r\nx") == []
    assert collect(events) == parts


def test_transport_padding_and_bare_lf() -> None:
    body = (
        b"--" + B + b" \t \r\nContent-Type: a/b\n\nfirst"
        b"\r\n--" + B + b"\t\nX-A: 1\r\n\r\nsecond"
        b"\r\n--" + B + b"--   \r\n"
    )
    assert parse(body) == [({"content-type": "a/b"}, b"first"), ({"x-a": "1"}, b"second")]


def test_longest_transport_padding_split_anywhere() -> None:
    pad = b" \t" * (MAX_TRANSPORT_PADDING // 2)
    body = b"--" + B + pad + b"\r\n\r\nfirst\r\n--" + B + pad + b"\nX: 1\r\n\r\nsecond\r\n--" + B + b"--"
    expected = [({}, b"first"), ({"x": "1"}, b"second")]
    for cut in range(len(body) + 1):
        assert parse(body, [cut]) == expected
    for size in (1, 7, 64, 300):
        assert parse(body, list(range(size, len(body), size))) == expected


def test_overlong_transport_padding_is_rejected() -> None:
    body = b"--" + B + b" " * (MAX_TRANSPORT_PADDING + 1) + b"\r\n\r\nx\r\n--" + B + b"--"
    with pytest.raises(MultipartError, match="padding"):
        MultipartRelatedReader(B).feed(body)


def test_missing_crlf_after_close_delimiter_is_accepted() -> None:
    assert parse(build([({}, b"abc")], epilogue=b"")) == [({}, b"abc")]


def test_boundary_text_not_preceded_by_crlf_does_not_split() -> None:
    payload = b"x--" + B + b"\r\n" + b"\n--" + B + b"--\n" + b"\n--" + B + b"\r\n" + b"y--" + B
    parts: Parts = [({}, payload)]
    assert parse(build(parts)) == parts


def test_crlf_boundary_followed_by_other_text_is_body() -> None:
    payload = b"a\r\n--" + B + b"X\r\n--" + B + b"-y\r\n--" + B + b" z"
    parts: Parts = [({}, payload)]
    assert parse(build(parts)) == parts


def test_folded_and_duplicate_headers() -> None:
    body = b"--" + B + b"\r\nX-Long: one\r\n two\r\nX-Dup: first\r\nx-dup: second\r\n\r\nb\r\n--" + B + b"--"
    assert parse(body) == [({"x-long": "one two", "x-dup": "first"}, b"b")]


def test_malformed_header_line_is_rejected() -> None:
    with pytest.raises(MultipartError, match="header"):
        MultipartRelatedReader(B).feed(b"--" + B + b"\r\nno colon here\r\n\r\nb\r\n--" + B + b"--")


# ---------------------------------------------------------------- errors and limits


def test_truncated_body_raises_on_close() -> None:
    body = build([({}, b"abcdef")])
    reader = MultipartRelatedReader(B)
    reader.feed(body[: len(body) - 10])
    assert not reader.done
    with pytest.raises(MultipartError, match="truncated body: no closing delimiter"):
        reader.close()
    with pytest.raises(MultipartError):  # the reader stays failed
        reader.feed(b"x")


def test_no_closing_delimiter_raises_on_close() -> None:
    reader = MultipartRelatedReader(B)
    events = reader.feed(b"--" + B + b"\r\n\r\nbody\r\n--" + B + b"\r\n\r\nsecond")
    assert [type(e) for e in events][:3] == [PartStart, PartData, PartEnd]
    with pytest.raises(MultipartError, match="no closing delimiter"):
        reader.close()


def test_close_delimiter_cut_short_is_truncated() -> None:
    reader = MultipartRelatedReader(B)
    reader.feed(b"--" + B + b"\r\n\r\nbody\r\n--" + B + b"-")
    with pytest.raises(MultipartError, match="truncated"):
        reader.close()


@pytest.mark.parametrize("body", [b"", b"no delimiter at all", b"--" + B + b"--\r\n"])
def test_empty_or_partless_body_raises_on_close(body: bytes) -> None:
    reader = MultipartRelatedReader(B)
    assert reader.feed(body) == []
    with pytest.raises(MultipartError):
        reader.close()


def test_wrong_boundary_in_body_raises_on_close() -> None:
    reader = MultipartRelatedReader(b"other")
    assert reader.feed(build([({}, b"abc")])) == []
    with pytest.raises(MultipartError, match="truncated"):
        reader.close()


@pytest.mark.parametrize("boundary", [b"", b"x" * (MAX_BOUNDARY_LENGTH + 1), b"a\r\nb"])
def test_reader_rejects_bad_boundary(boundary: bytes) -> None:
    with pytest.raises(MultipartError):
        MultipartRelatedReader(boundary)


def test_headers_over_cap_are_rejected() -> None:
    body = build([({"x-big": "v" * 2000}, b"abc")])
    with pytest.raises(MultipartError, match="exceed"):
        MultipartRelatedReader(B, max_header_size=1024).feed(body)
    # The same headers fed a byte at a time fail the same way, without buffering the body.
    reader = MultipartRelatedReader(B, max_header_size=1024)
    with pytest.raises(MultipartError, match="exceed"):
        for i in range(len(body)):
            reader.feed(body[i : i + 1])
    assert parse(body, max_header_size=4096) == [({"x-big": "v" * 2000}, b"abc")]


def test_headers_without_end_in_a_huge_chunk_are_rejected() -> None:
    body = b"--" + B + b"\r\nx-a: " + b"a" * (1 << 20)
    with pytest.raises(MultipartError, match="exceed"):
        MultipartRelatedReader(B).feed(body)


# ---------------------------------------------------------------- zero copy


def test_part_data_is_a_view_of_the_chunk_passed_in() -> None:
    reader = MultipartRelatedReader(B)
    head = b"--" + B + b"\r\nContent-Type: application/dicom\r\n\r\n" + b"a" * 1000
    middle = bytes(range(256)).replace(b"\r", b"") * 4096  # ~1 MiB, no CR: nothing held back
    assert collect([*reader.feed(head), PartEnd()])[0][1] == b"a" * 1000
    events = reader.feed(middle)
    assert len(events) == 1
    ev = events[0]
    assert isinstance(ev, PartData)
    assert ev.data.obj is middle
    assert len(ev.data) == len(middle)
    tail_events = reader.feed(b"\r\n--" + B + b"--")
    assert [type(e) for e in tail_events] == [PartEnd]


@pytest.mark.parametrize("sliced", [False, True])
def test_part_data_views_bytearray_and_memoryview_chunks(sliced: bool) -> None:
    reader = MultipartRelatedReader(B)
    reader.feed(b"--" + B + b"\r\n\r\n")
    backing = bytearray(b"z" * 100_000)
    chunk: bytearray | memoryview = memoryview(backing)[10:] if sliced else backing
    events = reader.feed(chunk)
    assert len(events) == 1
    ev = events[0]
    assert isinstance(ev, PartData)
    assert ev.data.obj is backing
    assert bytes(ev.data) == bytes(chunk)


def test_split_delimiter_copies_only_held_back_bytes() -> None:
    reader = MultipartRelatedReader(B)
    reader.feed(b"--" + B + b"\r\n\r\n")
    first = b"y" * 50_000 + b"\r\n--" + B[:5]
    events = reader.feed(first)
    assert len(events) == 1
    ev = events[0]
    assert isinstance(ev, PartData)
    assert ev.data.obj is first
    assert len(ev.data) == 50_000
    assert [type(e) for e in reader.feed(B[5:] + b"--")] == [PartEnd]


def test_held_back_false_alarm_copies_only_the_held_back_bytes() -> None:
    reader = MultipartRelatedReader(B)
    reader.feed(b"--" + B + b"\r\n\r\n")
    first = b"y" * 1000 + b"\r\n--"  # could be the start of a delimiter: held back
    assert bytes(reader.feed(first)[0].data) == b"y" * 1000  # type: ignore[union-attr]
    second = b"not the boundary" + b"w" * 100_000
    events = reader.feed(second)
    assert [type(e) for e in events] == [PartData, PartData]
    held, rest = (e.data for e in events)  # type: ignore[union-attr]
    assert bytes(held) == b"\r\n--"
    assert rest.obj is second
    assert len(rest) == len(second)


# ---------------------------------------------------------------- any chunking


def _true_delimiter(boundary: bytes) -> re.Pattern[bytes]:
    pad = MAX_TRANSPORT_PADDING
    return re.compile(
        re.escape(b"\r\n--" + boundary) + rb"(?:--|[ \t]{0,%d}\r?\n|[ \t]{%d})" % (pad, pad + 1)
    )


def _fragments(boundary: bytes) -> st.SearchStrategy[bytes]:
    near = [
        b"\r",
        b"\n",
        b"\r\n",
        b"-",
        b"--",
        b" ",
        boundary,
        boundary[:3],
        b"--" + boundary,
        b"\r\n--" + boundary[:-1],
        b"\r\n--" + boundary + b"X",
        b"\r\n--" + boundary + b"-",
        b"\r\n--" + boundary + b" \t",
        b"\r\n--" + boundary + b"\r",
    ]
    return st.one_of(st.sampled_from(near), st.binary(max_size=40))


@st.composite
def message(draw: st.DrawFn) -> tuple[bytes, bytes, Parts, list[int]]:
    boundary = draw(st.sampled_from([B, b"a", b"--", b"x y", b"L" * MAX_BOUNDARY_LENGTH]))
    true_delim = _true_delimiter(boundary)
    parts: Parts = []
    for _ in range(draw(st.integers(1, 4))):
        headers: dict[str, str] = {}
        if draw(st.booleans()):
            headers["content-type"] = draw(st.sampled_from(["application/dicom", "image/jpeg; q=1"]))
        if draw(st.booleans()):
            headers["content-location"] = draw(st.text("abc/:.", max_size=10))
        body = b"".join(draw(st.lists(_fragments(boundary), max_size=8)))
        # The sender's contract (RFC 2046): the body holds no delimiter line, and does not
        # begin with one (the header block's CRLF would make it a delimiter).
        probe = b"\r\n" + body + b"\r\n--" + boundary + b"--"
        m = true_delim.search(probe)
        assume(m is not None and m.start() == len(body) + 2)
        parts.append((headers, body))
    preamble = draw(st.sampled_from([b"", b"preamble text\r\n", b"--", b"\r\n"]))
    epilogue = draw(st.sampled_from([b"", b"\r\n", b"\r\n--" + boundary + b"\r\n", b"junk"]))
    body = build(parts, boundary, preamble=preamble, epilogue=epilogue)
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=12)))
    return boundary, body, parts, cuts


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(message(), st.sampled_from([bytes, bytearray, memoryview]))
def test_any_chunking_gives_the_same_parts(msg: tuple[bytes, bytes, Parts, list[int]], kind: type) -> None:
    boundary, body, parts, cuts = msg
    whole = parse(body, boundary=boundary)
    assert whole == parts
    reader = MultipartRelatedReader(boundary)
    events: list[PartStart | PartData | PartEnd] = []
    prev = 0
    for cut in [*cuts, len(body)]:
        events += reader.feed(kind(body[prev:cut]))
        prev = cut
    events += reader.close()
    assert collect(events) == parts


@settings(max_examples=100, deadline=None)
@given(message())
def test_byte_at_a_time_gives_the_same_parts(msg: tuple[bytes, bytes, Parts, list[int]]) -> None:
    boundary, body, parts, _ = msg
    assert parse(body, list(range(1, len(body))), boundary=boundary) == parts


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=6))
def test_arbitrary_bytes_never_crash_and_chunking_never_changes_the_outcome(
    noise: bytes, cuts: list[int]
) -> None:
    body = b"--a\r\n" + noise.replace(b"\x00", b"\r\n--a")

    def outcome(chunks: list[bytes]) -> object:
        reader = MultipartRelatedReader(b"a", max_header_size=64)
        events: list[PartStart | PartData | PartEnd] = []
        try:
            for c in chunks:
                events += reader.feed(c)
            events += reader.close()
        except MultipartError as exc:
            return ("error", exc.reason)
        return collect(events)

    bounds = [0, *sorted(c for c in cuts if c <= len(body)), len(body)]
    assert outcome([body]) == outcome([body[a:b] for a, b in pairwise(bounds)])
