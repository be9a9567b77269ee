"""QIDO-RS query parsing (PS3.18 8.3.4, 10.6; PS3.4 C.2.2.2). Pure: no I/O.

:func:`parse_qido` turns the query parameters of a search into a :class:`QidoQuery`; the
catalogs translate it to SQL (:mod:`.qidosql`). Keys are keywords (``PatientID``) or
8-digit hex tags (``00100020``); ``Seq.Attr`` / ``SSSSSSSS.TTTTTTTT`` match inside a
sequence, one level deep. Values arrive percent-decoded; ``* ? ^ ,`` are also taken
literally.

Matching kinds, by value:

* ``""`` (two double quotes): empty-value matching (the attribute is empty or absent).
* empty value or ``*``: universal matching (no condition; the attribute is returned).
* ``a-b``, ``a-``, ``-b`` on DA/TM/DT attributes: range matching, inclusive.
* several values separated by ``,`` (UI and CS) or ``\\`` (any VR): list matching, any of.
* a value containing ``*`` or ``?``: wildcard matching (``*`` any run, ``?`` one character),
  case-sensitive, over the whole value.
* anything else: single value matching, exact and case-sensitive.

``fuzzymatching=true`` changes person-name (PN) matching only, to this rule: the query and
the stored name are upper-cased; the query's alphabetic group is split on ``^`` into
components. A query without ``^`` matches when it is a prefix of the family, given or
middle name component (``jo`` matches ``Smith^John`` and ``Jones^Ann``). A query with
``^`` matches component by component, each non-empty query component being a prefix of
the stored component at the same position (``smi^j`` matches ``Smith^John``, not
``John^Smith``). Wildcards inside a component still apply. Other VRs match as without it.

Combined date-time matching (PS3.4 C.2.2.2.5.1): when a date and its time attribute
(``StudyDate`` + ``StudyTime``, ``PerformedProcedureStepStartDate`` + ``...Time``) are both
given, at least one as a range and neither as a list, they are matched as one date-time
range: ``StudyDate=20240101-20240103&StudyTime=1000-1800`` is from 2024-01-01 10:00 to
2024-01-03 18:00, not "10:00 to 18:00 on each of three days". A single value counts as the
range from itself to itself.

A key that is not a DICOM attribute (``?Foo=bar``, a keyword no dictionary knows) is a
:class:`BadRequestError` with the key in the reason. A real attribute the catalog cannot
match on never fails the search and is never silently dropped: it adds a text to
:attr:`QidoQuery.warnings` for a ``Warning: 299 <host> "<text>"`` response header, as
PS3.18 8.3.4 asks, and the attribute is still returned. Malformed values (a negative
``limit``, a date that is not a calendar date, a time past 23:59:60) raise
:class:`BadRequestError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Literal

from .. import dicomtags as T
from ..errors import BadRequestError
from ..uids import is_valid_uid
from .rows import normalize_date, normalize_time

Level = Literal["study", "series", "instance"]
Kind = Literal["single", "list", "wildcard", "range", "empty", "fuzzy", "datetime"]

LEVEL_RANK: dict[str, int] = {"study": 0, "series": 1, "instance": 2}

#: Attributes supported for matching: tag -> (level of the table, column, VR class).
#: ModalitiesInStudy and SOPClassesInStudy match the series/instances of the study.
MATCHABLE: dict[int, tuple[Level, str]] = {
    0x0020000D: ("study", "study_uid"),
    0x00080020: ("study", "study_date"),
    0x00080030: ("study", "study_time"),
    0x00080050: ("study", "accession_number"),
    0x00100010: ("study", "patient_name"),
    0x00100020: ("study", "patient_id"),
    0x00100030: ("study", "patient_birth_date"),
    0x00100040: ("study", "patient_sex"),
    0x00080090: ("study", "referring_physician_name"),
    0x00200010: ("study", "study_id"),
    0x00081030: ("study", "study_description"),
    0x00080061: ("series", "modality"),
    0x00080062: ("instance", "sop_class_uid"),
    0x0020000E: ("series", "series_uid"),
    0x00080060: ("series", "modality"),
    0x00200011: ("series", "series_number"),
    0x0008103E: ("series", "series_description"),
    0x00080021: ("series", "series_date"),
    0x00180015: ("series", "body_part_examined"),
    0x00400244: ("series", "pps_start_date"),
    0x00400245: ("series", "pps_start_time"),
    0x00080018: ("instance", "sop_instance_uid"),
    0x00080016: ("instance", "sop_class_uid"),
    0x00200013: ("instance", "instance_number"),
}

#: Date attribute -> its time attribute, matched together as one date-time range.
DATE_TIME_PAIRS: dict[int, int] = {0x00080020: 0x00080030, 0x00400244: 0x00400245}

#: Integer columns (IS attributes stored as numbers).
INT_COLUMNS = frozenset({"series_number", "instance_number"})
#: PN columns with per-component upper-case columns ``<prefix>_family/_given/_middle``.
FUZZY_PREFIX = {"patient_name": "pn", "referring_physician_name": "rp"}

_RANGE_VRS = frozenset({"DA", "TM", "DT"})
_COMMA_LIST_VRS = frozenset({"UI", "CS"})
_DA = re.compile(r"\d{8}")
_TM = re.compile(r"\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?")
_DT = re.compile(r"\d{4}(\d{2}){0,5}(\.\d{1,6})?([+-]\d{4})?")
_RESERVED = frozenset({"includefield", "limit", "offset", "fuzzymatching"})
# Parameters clients send that are not matching keys and need no warning.
_IGNORED = frozenset({"charset", "accept", "callback"})


@dataclass(frozen=True, slots=True)
class Match:
    """One matching key. ``sequence`` is the enclosing sequence tag for sequence matching."""

    tag: int
    vr: str
    kind: Kind
    #: ``datetime``: (low date, low time, high date, high time); ``""`` = open end.
    values: tuple[str, ...]
    sequence: int | None = None


@dataclass(frozen=True, slots=True)
class QidoQuery:
    level: Level
    study_uid: str | None = None
    series_uid: str | None = None
    matches: tuple[Match, ...] = ()
    #: Attributes to return beyond the level's defaults (matching keys included).
    includefields: tuple[int, ...] = ()
    include_all: bool = False
    limit: int | None = None
    offset: int = 0
    fuzzy: bool = False
    warnings: tuple[str, ...] = ()


def parse_qido(
    level: Level,
    params: list[tuple[str, str]],
    *,
    study_uid: str | None = None,
    series_uid: str | None = None,
    max_limit: int | None = None,
) -> QidoQuery:
    """Parse QIDO-RS query parameters for a search at ``level``.

    ``study_uid``/``series_uid`` come from the resource path (``/studies/{s}/series``).
    ``max_limit`` caps ``limit`` (and applies when none is given), with a warning when it cuts.
    """
    if level not in LEVEL_RANK:
        raise BadRequestError(f"unknown query level {level!r}")
    warnings: list[str] = []
    includes: dict[int, None] = {}
    include_all = False
    limit: int | None = None
    offset = 0
    fuzzy = False
    pending: list[tuple[str, str]] = []
    for key, value in params:
        if _FORBIDDEN_CONTROLS.search(key) or _FORBIDDEN_CONTROLS.search(value):
            raise BadRequestError(
                f"query parameter {key[:64]!r} holds a control character that no DICOM value holds"
            )
        lkey = key.lower()
        if lkey == "includefield":
            for item in value.split(","):
                item = item.strip()
                if not item:
                    continue
                if item.lower() == "all":
                    include_all = True
                    continue
                tag = T.lookup_tag(item)
                if tag is None:
                    warnings.append(f"unknown includefield {item!r} ignored")
                else:
                    includes[tag] = None
        elif lkey in ("limit", "offset"):
            number = _non_negative_int(key, value)
            if lkey == "limit":
                limit = number
            else:
                offset = number
        elif lkey == "fuzzymatching":
            if value.lower() not in ("true", "false"):
                raise BadRequestError(f"fuzzymatching must be true or false, not {value!r}")
            fuzzy = value.lower() == "true"
        elif lkey in _IGNORED:
            continue
        else:
            pending.append((key, value))
    if max_limit is not None and (limit is None or limit > max_limit):
        if limit is not None:
            warnings.append(f"limit {limit} exceeds the maximum; at most {max_limit} results returned")
        limit = max_limit

    matches: list[Match] = []
    for key, value in pending:
        match = _parse_key(key, value, fuzzy, includes, warnings)
        if match is not None:
            matches.append(match)
    return QidoQuery(
        level=level,
        study_uid=study_uid,
        series_uid=series_uid,
        matches=tuple(_combine_date_time(matches)),
        includefields=tuple(includes),
        include_all=include_all,
        limit=limit,
        offset=offset,
        fuzzy=fuzzy,
        warnings=tuple(warnings),
    )


#: C0 controls and DEL, except those DICOM text values may hold (TAB, LF, FF, CR, ESC for ISO
#: 2022 code extensions). NUL in particular: no database text column can hold it.
_FORBIDDEN_CONTROLS = re.compile("[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f\x7f]")

#: Largest ``limit``/``offset`` accepted (beyond it a database integer would overflow).
MAX_PAGE_NUMBER = 2**31 - 1


def _non_negative_int(key: str, value: str) -> int:
    text = value.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 10 or int(text) > MAX_PAGE_NUMBER:
        raise BadRequestError(f"{key} must be an integer within 0..{MAX_PAGE_NUMBER}, not {value[:40]!r}")
    return int(text)


def _parse_key(
    key: str, value: str, fuzzy: bool, includes: dict[int, None], warnings: list[str]
) -> Match | None:
    parts = key.split(".")
    tags = [T.lookup_tag(p) for p in parts]
    unknown = [p for p, t in zip(parts, tags, strict=True) if t is None]
    if unknown:
        raise BadRequestError(
            f"unknown query key {key!r}: {unknown[0]!r} is not a DICOM attribute keyword or"
            " 8-digit hex tag (nor includefield, limit, offset or fuzzymatching)"
        )
    if len(parts) > 2:
        warnings.append(f"sequence matching deeper than one level is not supported: {key!r} ignored")
        return None
    sequence: int | None = None
    if len(parts) == 2:
        sequence, tag = tags[0], tags[1]
        assert sequence is not None and tag is not None
        if T.vr_of(sequence) != "SQ":
            warnings.append(f"{key!r}: {parts[0]} is not a sequence; key ignored")
            return None
        includes.setdefault(sequence, None)
    else:
        tag = tags[0]
        assert tag is not None
        includes.setdefault(tag, None)
        if tag not in MATCHABLE:
            if value not in ("", "*"):
                warnings.append(
                    f"matching on {T.keyword_of(tag)} ({T.tag_hex(tag)}) is not supported; "
                    "the attribute is returned but not matched"
                )
            return None
    vr = T.vr_of(tag) or "UN"
    if vr == "SQ":
        warnings.append(f"{key!r}: matching a whole sequence needs an item attribute (Seq.Attr); ignored")
        return None
    return _parse_value(key, tag, vr, value, fuzzy, sequence, warnings)


def _parse_value(
    key: str, tag: int, vr: str, value: str, fuzzy: bool, sequence: int | None, warnings: list[str]
) -> Match | None:
    column = MATCHABLE.get(tag, ("study", ""))[1] if sequence is None else ""
    if value in ("", "*"):
        return None  # universal matching
    if value == '""':
        if sequence is not None:
            warnings.append(f"empty-value matching inside a sequence is not supported: {key!r} ignored")
            return None
        return Match(tag, vr, "empty", (), sequence)
    if vr in _RANGE_VRS:
        return _parse_temporal(key, tag, vr, value, sequence)
    if column in INT_COLUMNS:
        if any(c in value for c in "*?"):
            warnings.append(f"wildcard matching on {key} (an integer) is not supported; key ignored")
            return None
        items = [v.strip() for v in re.split(r"[,\\]", value)]
        if not all(re.fullmatch(r"[+-]?\d+", v) for v in items):
            raise BadRequestError(f"{key} must be an integer (or a list of integers), not {value!r}")
        return Match(tag, vr, "list" if len(items) > 1 else "single", tuple(items), sequence)
    separators = r"[,\\]" if vr in _COMMA_LIST_VRS else r"\\"
    items = [v for v in re.split(separators, value) if v != ""]
    if vr == "UI":
        if any(c in value for c in "*?"):
            warnings.append(f"wildcard matching on {key} (a UID) is not supported; key ignored")
            return None
        bad = [u for u in items if not is_valid_uid(u)]
        if bad:
            raise BadRequestError(f"{key}: invalid UID {bad[0]!r}")
    if fuzzy and vr == "PN" and sequence is None and column in FUZZY_PREFIX:
        return Match(tag, vr, "fuzzy", (value,), sequence)
    if len(items) > 1:
        if any("*" in v or "?" in v for v in items):
            warnings.append(f"wildcards inside a value list are not supported: {key!r} ignored")
            return None
        return Match(tag, vr, "list", tuple(items), sequence)
    if "*" in value or "?" in value:
        return Match(tag, vr, "wildcard", (value,), sequence)
    return Match(tag, vr, "single", (value,), sequence)


def _valid_date(v: str) -> bool:
    if _DA.fullmatch(v) is None:
        return False
    try:
        date(int(v[:4]), int(v[4:6]), int(v[6:8]))
    except ValueError:
        return False
    return True


def _valid_time(v: str) -> bool:
    """``HH[MM[SS[.F]]]`` with HH < 24, MM < 60, SS <= 60 (a leap second)."""
    if _TM.fullmatch(v) is None:
        return False
    hh, mm, ss = v[0:2], v[2:4], v[4:6]
    return int(hh) < 24 and (not mm or int(mm) < 60) and (not ss or int(ss) <= 60)


def _valid_datetime(v: str) -> bool:
    m = _DT.fullmatch(v)
    if m is None:
        return False
    whole = v.split(".", 1)[0][:14]
    for sign in "+-":
        whole = whole.split(sign, 1)[0]
    if len(whole) >= 8 and not _valid_date(whole[:8]):
        return False
    if len(whole) >= 6 and not 1 <= int(whole[4:6]) <= 12:
        return False
    return len(whole) <= 8 or _valid_time(whole[8:])


def _parse_temporal(key: str, tag: int, vr: str, value: str, sequence: int | None) -> Match:
    def norm(v: str) -> str:
        v = v.strip()
        if vr == "DA":
            v = normalize_date(v)
            ok = _valid_date(v)
        elif vr == "TM":
            v = v.replace(":", "")
            ok = _valid_time(v)
            v = normalize_time(v)
        else:
            ok = _valid_datetime(v)
        if not ok:
            raise BadRequestError(f"{key}: invalid {vr} value {v!r} in {value!r}")
        return v

    if "-" in value and not (vr == "DT" and re.fullmatch(r"[^-]+[+-]\d{4}", value)):
        low, _, high = value.partition("-")
        if not low and not high:
            raise BadRequestError(f"{key}: empty range {value!r}")
        lo = norm(low) if low else ""
        hi = norm(high) if high else ""
        # The order of the bounds is checked once date and time keys are combined: as part
        # of one date-time range, StudyTime=1500-0900 is meaningful.
        return Match(tag, vr, "range", (lo, hi), sequence)
    items = [norm(v) for v in value.split("\\")]
    return Match(tag, vr, "list" if len(items) > 1 else "single", tuple(items), sequence)


def _combine_date_time(matches: list[Match]) -> list[Match]:
    """Merge a date key and its time key into one ``datetime`` match (PS3.4 C.2.2.2.5.1)."""
    by_tag = {m.tag: m for m in matches if m.sequence is None}
    out = list(matches)
    for date_tag, time_tag in DATE_TIME_PAIRS.items():
        d, t = by_tag.get(date_tag), by_tag.get(time_tag)
        if d is None or t is None or d.kind not in ("single", "range") or t.kind not in ("single", "range"):
            continue
        if "range" not in (d.kind, t.kind):
            continue  # two single values: the plain AND of both is already the meaning
        dlo, dhi = d.values if d.kind == "range" else (d.values[0], d.values[0])
        tlo, thi = t.values if t.kind == "range" else (t.values[0], t.values[0])
        if dlo and dhi and (dlo, tlo or "000000") > (dhi, thi or "999999"):
            raise BadRequestError(
                f"date-time range from {dlo} {tlo} to {dhi} {thi} ends before it starts"
                f" ({T.keyword_of(date_tag)} with {T.keyword_of(time_tag)})"
            )
        merged = Match(date_tag, d.vr, "datetime", (dlo, tlo if dlo else "", dhi, thi if dhi else ""))
        out = [m for m in out if m is not d and m is not t]
        out.append(merged)
    for m in out:
        if m.kind == "range" and m.values[0] and m.values[1] and m.values[0] > m.values[1]:
            name = T.keyword_of(m.tag)
            raise BadRequestError(f"{name}: range {m.values[0]}-{m.values[1]} ends before it starts")
    return out
