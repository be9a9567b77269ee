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

Keys that are unknown, or known but not supported for matching, never fail the search and
are never silently dropped: each adds a text to :attr:`QidoQuery.warnings` for a
``Warning: 299 <host> "<text>"`` response header (known attributes are still returned).
Malformed values (a negative ``limit``, a bad date) raise :class:`BadRequestError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from .. import dicomtags as T
from ..errors import BadRequestError
from ..uids import is_valid_uid
from .rows import normalize_date, normalize_time

Level = Literal["study", "series", "instance"]
Kind = Literal["single", "list", "wildcard", "range", "empty", "fuzzy"]

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
        matches=tuple(matches),
        includefields=tuple(includes),
        include_all=include_all,
        limit=limit,
        offset=offset,
        fuzzy=fuzzy,
        warnings=tuple(warnings),
    )


def _non_negative_int(key: str, value: str) -> int:
    try:
        number = int(value.strip())
    except ValueError:
        raise BadRequestError(f"{key} must be a non-negative integer, not {value!r}") from None
    if number < 0:
        raise BadRequestError(f"{key} must be a non-negative integer, not {value!r}")
    return number


def _parse_key(
    key: str, value: str, fuzzy: bool, includes: dict[int, None], warnings: list[str]
) -> Match | None:
    parts = key.split(".")
    tags = [T.lookup_tag(p) for p in parts]
    if any(t is None for t in tags):
        warnings.append(f"unknown query key {key!r} ignored")
        return None
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


def _parse_temporal(key: str, tag: int, vr: str, value: str, sequence: int | None) -> Match:
    def norm(v: str) -> str:
        v = v.strip()
        if vr == "DA":
            v = normalize_date(v)
            ok = _DA.fullmatch(v) is not None
        elif vr == "TM":
            v = v.replace(":", "")
            ok = _TM.fullmatch(v) is not None
            v = normalize_time(v)
        else:
            ok = _DT.fullmatch(v) is not None
        if not ok:
            raise BadRequestError(f"{key}: invalid {vr} value {v!r} in {value!r}")
        return v

    if "-" in value and not (vr == "DT" and re.fullmatch(r"[^-]+[+-]\d{4}", value)):
        low, _, high = value.partition("-")
        if not low and not high:
            raise BadRequestError(f"{key}: empty range {value!r}")
        lo = norm(low) if low else ""
        hi = norm(high) if high else ""
        if lo and hi and lo > hi:
            raise BadRequestError(f"{key}: range {value!r} ends before it starts")
        return Match(tag, vr, "range", (lo, hi), sequence)
    items = [norm(v) for v in value.split("\\")]
    return Match(tag, vr, "list" if len(items) > 1 else "single", tuple(items), sequence)
