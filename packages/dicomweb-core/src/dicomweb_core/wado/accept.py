"""Accept header parsing and WADO-RS content negotiation (PS3.18 8.7).

Clients disagree on the details, so parsing is lenient: ``type`` and ``transfer-syntax``
may be quoted or not (OHIF sends ``multipart/related; type=application/octet-stream;
transfer-syntax=*``), several values may carry q-values, ``*/*`` and
``multipart/related; type="*/*"`` (dicomweb-client's default) mean "anything", and a
value with ``q=0`` is refused. Values are returned best first; equal q-values keep the
client's order.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.uid import UID

from ..multipart import parse_content_type

MULTIPART = "multipart/related"
ANY = "*/*"
DICOM = "application/dicom"
OCTET_STREAM = "application/octet-stream"
DICOM_JSON = "application/dicom+json"
DICOM_XML = "application/dicom+xml"
ZIP = "application/zip"
#: The default transfer syntax of ``application/dicom`` and ``application/octet-stream``.
EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
#: Transfer syntaxes whose pixel data is native (not encapsulated).
NATIVE_SYNTAXES = frozenset({EXPLICIT_LE, IMPLICIT_LE, EXPLICIT_BE, DEFLATED_LE})

#: PS3.18 Table 8.7.3-5: the media type of compressed pixel data, by transfer syntax.
PIXEL_MEDIA_TYPES: dict[str, str] = {
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.92": "image/jpx",
    "1.2.840.10008.1.2.4.93": "image/jpx",
    "1.2.840.10008.1.2.4.201": "image/jphc",
    "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
    "1.2.840.10008.1.2.5": "image/dicom-rle",
    "1.2.840.10008.1.2.4.100": "video/mpeg",
    "1.2.840.10008.1.2.4.101": "video/mpeg",
    "1.2.840.10008.1.2.4.102": "video/mp4",
    "1.2.840.10008.1.2.4.103": "video/mp4",
    "1.2.840.10008.1.2.4.104": "video/mp4",
    "1.2.840.10008.1.2.4.105": "video/mp4",
    "1.2.840.10008.1.2.4.106": "video/mp4",
    "1.2.840.10008.1.2.4.107": "video/H265",
    "1.2.840.10008.1.2.4.108": "video/H265",
}
#: Old and alternative spellings clients send.
_MEDIA_ALIASES = {
    "image/x-dicom-rle": "image/dicom-rle",
    "image/x-jls": "image/jls",
    "video/mpeg2": "video/mpeg",
}


def pixel_media_type(transfer_syntax: str) -> str:
    """The media type of a frame stored in ``transfer_syntax`` (octet-stream for native)."""
    return PIXEL_MEDIA_TYPES.get(transfer_syntax, OCTET_STREAM)


def is_encapsulated(transfer_syntax: str) -> bool:
    if transfer_syntax in NATIVE_SYNTAXES:
        return False
    if transfer_syntax in PIXEL_MEDIA_TYPES:
        return True
    uid = UID(transfer_syntax)
    return bool(uid.is_transfer_syntax and uid.is_compressed)


@dataclass(frozen=True, slots=True)
class MediaRange:
    """One Accept value. For ``multipart/related``, ``part`` is its ``type`` parameter;
    otherwise ``part`` equals ``media_type``. ``transfer_syntax`` is ``None`` when absent."""

    media_type: str
    part: str
    transfer_syntax: str | None
    q: float
    multipart: bool

    def part_matches(self, candidate: str) -> bool:
        """Whether this range's part type covers ``candidate`` (``*/*`` and ``image/*`` too)."""
        if self.part in (ANY, "*"):
            return True
        if self.part.endswith("/*"):
            return candidate.startswith(self.part[:-1])
        return self.part == candidate


def _split_top_level(value: str) -> list[str]:
    """Split on commas outside double quotes."""
    out: list[str] = []
    start = 0
    quoted = False
    escaped = False
    for i, c in enumerate(value):
        if escaped:
            escaped = False
        elif c == "\\" and quoted:
            escaped = True
        elif c == '"':
            quoted = not quoted
        elif c == "," and not quoted:
            out.append(value[start:i])
            start = i + 1
    out.append(value[start:])
    return [v.strip() for v in out if v.strip()]


def _q(params: dict[str, str]) -> float:
    raw = params.get("q")
    if raw is None:
        return 1.0
    try:
        return min(max(float(raw), 0.0), 1.0)
    except ValueError:
        return 1.0


def parse_accept(header: str | None) -> list[MediaRange]:
    """The acceptable media ranges, best first; an absent or empty header means ``*/*``."""
    if not header or not header.strip():
        return [MediaRange(ANY, ANY, None, 1.0, False)]
    ranges: list[tuple[float, int, MediaRange]] = []
    for index, item in enumerate(_split_top_level(header)):
        media_type, params = parse_content_type(item)
        if media_type == "*":  # seen in the wild for */*
            media_type = ANY
        elif "/" not in media_type:
            continue
        q = _q(params)
        if q <= 0:
            continue
        media_type = _MEDIA_ALIASES.get(media_type, media_type)
        ts = params.get("transfer-syntax") or None
        if media_type == MULTIPART:
            part = (params.get("type") or ANY).lower()
            part = _MEDIA_ALIASES.get(part, part)
            # Some clients put the transfer syntax inside the quoted type parameter.
            if ";" in part:
                part, inner = parse_content_type(part)
                ts = ts or inner.get("transfer-syntax") or None
            rng = MediaRange(media_type, part, ts, q, True)
        else:
            rng = MediaRange(media_type, media_type, ts, q, False)
        ranges.append((-q, index, rng))
    ranges.sort(key=lambda t: (t[0], t[1]))
    return [r for _, _, r in ranges]


def describe(ranges: list[MediaRange]) -> str:
    """A short text of what was asked, for 406 reasons."""
    shown = []
    for r in ranges[:4]:
        text = f"{r.media_type}; type={r.part}" if r.multipart else r.media_type
        if r.transfer_syntax:
            text += f"; transfer-syntax={r.transfer_syntax}"
        shown.append(text)
    return ", ".join(shown) + (" ..." if len(ranges) > 4 else "")
