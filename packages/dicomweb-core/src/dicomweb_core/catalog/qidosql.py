"""QIDO-RS: from a :class:`QidoQuery` to indexed SQL, and from rows to DICOM JSON results.
Pure: builds text and dicts, runs nothing.

Each level searches its own table (``studies st``, ``series se``, ``instances i``) joined to
the enclosing levels; a key of a lower level (``Modality`` in a study search) becomes an
``IN (SELECT ...)`` over that level's table, and sequence keys an ``IN (SELECT ...)`` over
``seq_attrs``. Every matching column is indexed; the ``ORDER BY`` of each level follows an
index so ``limit``/``offset`` pages are stable, disjoint and complete.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from .. import dicomtags as T
from .qido import DATE_TIME_PAIRS, FUZZY_PREFIX, INT_COLUMNS, LEVEL_RANK, MATCHABLE, Match, QidoQuery
from .schema import Dialect

_ALIAS = {"study": "st", "series": "se", "instance": "i"}
_TABLE = {"study": "studies", "series": "series", "instance": "instances"}
_KEY = {"study": "study_uid", "series": "series_uid", "instance": "sop_instance_uid"}

_SELECT = {
    "study": "st.study_uid, st.attrs, st.num_series, st.num_instances, st.modalities, st.sop_classes",
    "series": "se.series_uid, se.attrs, se.num_instances, st.study_uid, st.attrs,"
    " st.num_series, st.num_instances, st.modalities, st.sop_classes",
    "instance": "i.sop_instance_uid, i.attrs, se.series_uid, se.attrs, se.num_instances, st.study_uid,"
    " st.attrs, st.num_series, st.num_instances, st.modalities, st.sop_classes",
}
_FROM = {
    "study": "studies st",
    "series": "series se JOIN studies st ON st.study_uid = se.study_uid",
    "instance": "instances i JOIN series se ON se.series_uid = i.series_uid"
    " JOIN studies st ON st.study_uid = i.study_uid",
}
_ORDER = {
    "study": "st.study_date DESC, st.study_time DESC, st.study_uid",
    "series": "se.study_uid, se.series_number NULLS LAST, se.series_uid",
    "instance": "i.study_uid, i.series_uid, i.instance_number NULLS LAST, i.sop_instance_uid",
}

# Attributes each level's stored ``attrs`` (and the enclosing levels') can answer.
_COVERED = {
    "study": T.STUDY_LEVEL,
    "series": T.STUDY_LEVEL | T.SERIES_LEVEL,
    "instance": T.STUDY_LEVEL | T.SERIES_LEVEL | T.INSTANCE_LEVEL,
}
_COMPUTED = frozenset(
    {
        T.MODALITIES_IN_STUDY,
        T.SOP_CLASSES_IN_STUDY,
        T.NUMBER_OF_STUDY_RELATED_SERIES,
        T.NUMBER_OF_STUDY_RELATED_INSTANCES,
        T.NUMBER_OF_SERIES_RELATED_INSTANCES,
        T.INSTANCE_AVAILABILITY,
        T.RETRIEVE_URL,
    }
)
_RETURN_KEYS = {
    "study": T.STUDY_RETURN,
    "series": T.STUDY_RETURN + T.SERIES_RETURN,
    "instance": T.STUDY_RETURN + T.SERIES_RETURN + T.INSTANCE_RETURN,
}


@dataclass(frozen=True, slots=True)
class Plan:
    sql: str
    params: list[Any]
    #: Whether :func:`results` needs one instance's full metadata per result row.
    needs_metadata: bool
    #: The ``instances`` column that identifies a result row (to fetch that metadata).
    level_key_column: str


class _Builder:
    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self.ph = "?" if dialect == "sqlite" else "%s"
        self.params: list[Any] = []

    def p(self, value: Any) -> str:
        self.params.append(value)
        return self.ph

    def pattern(self, col: str, wildcard: str) -> str:
        """``col`` matches the DICOM wildcard value (``*``, ``?``), case-sensitively."""
        if self.dialect == "sqlite":
            # GLOB is case-sensitive, uses * and ? natively and can use an index for a prefix.
            glob = "".join("[[]" if ch == "[" else ch for ch in wildcard)
            return f"{col} GLOB {self.p(glob)}"
        like = []
        for ch in wildcard:
            if ch in "%_\\":
                like.append("\\" + ch)
            elif ch == "*":
                like.append("%")
            elif ch == "?":
                like.append("_")
            else:
                like.append(ch)
        return f"{col} LIKE {self.p(''.join(like))} ESCAPE '\\'"

    def condition(self, col: str, m: Match) -> str:
        conv = int if col.rsplit(".", 1)[-1] in INT_COLUMNS else str
        if m.kind == "single":
            return f"{col} = {self.p(conv(m.values[0]))}"
        if m.kind == "list":
            return f"{col} IN ({', '.join(self.p(conv(v)) for v in m.values)})"
        if m.kind == "wildcard":
            return self.pattern(col, m.values[0])
        if m.kind == "range":
            lo, hi = m.values
            parts = []
            if lo:
                parts.append(f"{col} >= {self.p(lo)}")
            if hi:
                # A stored value may be longer (more precise) than the bound: "1200" <= "120000".
                parts.append(f"{col} <= {self.p(hi)}")
            # Empty values never fall inside a range (``'' >= lo`` is false, but ``'' <= hi`` is not).
            parts.append(f"{col} <> ''")
            return " AND ".join(parts)
        if m.kind == "empty":
            return f"{col} IS NULL" if conv is int else f"({col} = '' OR {col} IS NULL)"
        if m.kind == "datetime":
            return self.datetime_range(col, m)
        return self.fuzzy(col, m.values[0])

    def datetime_range(self, date_col: str, m: Match) -> str:
        """A date and its time column as one range: (date, time) between the two bounds."""
        alias = date_col.split(".")[0]
        time_col = f"{alias}.{MATCHABLE[DATE_TIME_PAIRS[m.tag]][1]}"
        dlo, tlo, dhi, thi = m.values
        parts = [f"{date_col} <> ''"]
        if dlo:
            if tlo:
                d1, d2, t = self.p(dlo), self.p(dlo), self.p(tlo)
                parts.append(f"({date_col} > {d1} OR ({date_col} = {d2} AND {time_col} >= {t}))")
            else:
                parts.append(f"{date_col} >= {self.p(dlo)}")
        if dhi:
            if thi:
                d1, d2, t = self.p(dhi), self.p(dhi), self.p(thi)
                parts.append(
                    f"({date_col} < {d1} OR ({date_col} = {d2} AND {time_col} <= {t} AND {time_col} <> ''))"
                )
            else:
                parts.append(f"{date_col} <= {self.p(dhi)}")
        return "(" + " AND ".join(parts) + ")"

    def fuzzy(self, col: str, value: str) -> str:
        alias, name = col.split(".")
        prefix = f"{alias}.{FUZZY_PREFIX[name]}"
        query = value.split("=", 1)[0].upper()
        comps = [c.strip() for c in query.split("^")][:3]
        cols = [f"{prefix}_family", f"{prefix}_given", f"{prefix}_middle"]
        if len(comps) == 1:
            token = comps[0].rstrip("*") + "*"
            return "(" + " OR ".join(self.pattern(c, token) for c in cols) + ")"
        parts = [
            self.pattern(c, comp.rstrip("*") + "*") for c, comp in zip(cols, comps, strict=False) if comp
        ]
        return "(" + " AND ".join(parts) + ")" if parts else "1 = 1"


def plan(query: QidoQuery, dialect: Dialect) -> Plan:
    """The SQL for ``query`` in ``dialect``, with its parameters."""
    b = _Builder(dialect)
    level = query.level
    rank = LEVEL_RANK[level]
    alias = _ALIAS[level]
    where: list[str] = []
    if query.study_uid is not None:
        where.append(f"{alias}.study_uid = {b.p(query.study_uid)}")
    if query.series_uid is not None and rank >= 1:
        where.append(f"{alias}.series_uid = {b.p(query.series_uid)}")
    # Keys of a lower level are grouped into one sub-select per level, which puts their text
    # after the other conditions. Placeholders are positional, so each group collects its
    # parameters in its own builder and they join the main list where its text lands;
    # otherwise ``ModalitiesInStudy=CT&PatientID=P1`` would bind "CT" to patient_id.
    # ModalitiesInStudy / SOPClassesInStudy are study attributes: each is its own sub-select
    # (a study with a CT series and an SR series matches ModalitiesInStudy=CT&Modality=SR),
    # whereas keys of one lower level (Modality, BodyPartExamined) must hold for one row.
    lower: dict[tuple[str, int], tuple[_Builder, list[str]]] = {}
    key_col = f"{alias}.{_KEY[level]}"
    for m in query.matches:
        if m.sequence is not None:
            path = f"{T.tag_hex(m.sequence)}.{T.tag_hex(m.tag)}"
            # Placeholders are positional: the path's parameter goes first, as in the text.
            path_ph = b.p(path)
            cond = b.condition("value", m)
            where.append(
                f"{key_col} IN (SELECT {_KEY[level]} FROM seq_attrs WHERE path = {path_ph} AND {cond})"
            )
            continue
        m_level, column = MATCHABLE[m.tag]
        if LEVEL_RANK[m_level] <= rank:
            where.append(b.condition(f"{_ALIAS[m_level]}.{column}", m))
        else:
            group = m.tag if m.tag in _STUDY_COMPUTED else 0
            sub_b, conds = lower.setdefault((m_level, group), (_Builder(dialect), []))
            conds.append(sub_b.condition(f"x.{column}", m))
    for (sub_level, _), (sub_b, conds) in lower.items():
        where.append(
            f"{key_col} IN (SELECT x.{_KEY[level]} FROM {_TABLE[sub_level]} x WHERE {' AND '.join(conds)})"
        )
        b.params.extend(sub_b.params)
    # Deferred join: the page is chosen on narrow rows (keys and sort columns, often an
    # index-only scan), then only its rows are joined to fetch the wide ``attrs`` blobs. A
    # deep ``offset`` then skips index entries, not sorted copies of whole rows.
    page = f"SELECT {key_col} AS k FROM {_FROM[level]}"
    if where:
        page += " WHERE " + " AND ".join(where)
    page += f" ORDER BY {_ORDER[level]}"
    if query.limit is not None:
        page += f" LIMIT {b.p(query.limit)}"
    elif query.offset and dialect == "sqlite":
        page += " LIMIT -1"
    if query.offset:
        page += f" OFFSET {b.p(query.offset)}"
    sql = (
        f"SELECT {_SELECT[level]} FROM {_FROM[level]} JOIN ({page}) page ON page.k = {key_col}"
        f" ORDER BY {_ORDER[level]}"
    )
    wanted = set(query.includefields) - _COVERED[level] - _COMPUTED
    needs = bool(wanted) or (query.include_all and level == "instance")
    return Plan(sql, b.params, needs, _KEY[level])


def results(
    query: QidoQuery, rows: list[tuple[Any, ...]], extra: dict[str, bytes], base_url: str
) -> list[dict[str, Any]]:
    """DICOM JSON result objects for the rows of :func:`plan`'s SQL, in order.

    ``extra`` maps a row's key to one instance's full metadata (for ``includefield`` of
    attributes outside the level's stored ones)."""
    level = query.level
    include = [T.tag_hex(t) for t in query.includefields]
    include_set = set(query.includefields)
    base = base_url.rstrip("/")
    defaults = _RETURN_DEFAULTS[level]
    # PS3.18 10.6.3.3: a search across studies returns the study attributes (Table 10.6.3-3,
    # computed ones included) with every series/instance, and an instance search the
    # series attributes too. We return them at every level: a client that searched
    # /studies/{s}/instances gets the same shape as one that searched /instances.
    study_computed_tags = _STUDY_COMPUTED
    want_series_count = level != "study" or T.NUMBER_OF_SERIES_RELATED_INSTANCES in include_set
    out: list[dict[str, Any]] = []
    for row in rows:
        if level == "study":
            study_uid, st_attrs, n_series, n_inst, modalities, sop_classes = row
            layers = [st_attrs]
            n_series_inst = None
            url = f"{base}/studies/{study_uid}"
            key = study_uid
        elif level == "series":
            series_uid, se_attrs, n_series_inst, study_uid, st_attrs = row[:5]
            n_series, n_inst, modalities, sop_classes = row[5:]
            layers = [st_attrs, se_attrs]
            url = f"{base}/studies/{study_uid}/series/{series_uid}"
            key = series_uid
        else:
            sop_uid, i_attrs, series_uid, se_attrs, n_series_inst, study_uid, st_attrs = row[:7]
            n_series, n_inst, modalities, sop_classes = row[7:]
            layers = [st_attrs, se_attrs, i_attrs]
            url = f"{base}/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}"
            key = sop_uid
        merged: dict[str, Any] = {}
        for layer in layers:
            merged.update(orjson.loads(layer))
        obj: dict[str, Any] = {h: merged.get(h) or {"vr": vr} for h, vr in defaults}
        for h in include:
            if h in merged:
                obj[h] = merged[h]
        if query.include_all:
            obj.update(merged)
        meta = extra.get(key)
        if meta is not None:
            full = orjson.loads(meta)
            wanted = list(full) if query.include_all and level == "instance" else include
            for h in wanted:
                elem = full.get(h)
                if (
                    h not in obj
                    and elem is not None
                    and "BulkDataURI" not in elem
                    and "InlineBinary" not in elem
                ):
                    obj[h] = elem
        obj["00080056"] = {"vr": "CS", "Value": ["ONLINE"]}
        for tag in study_computed_tags:
            if tag == T.MODALITIES_IN_STUDY:
                obj["00080061"] = _multi("CS", modalities)
            elif tag == T.SOP_CLASSES_IN_STUDY:
                obj["00080062"] = _multi("UI", sop_classes)
            elif tag == T.NUMBER_OF_STUDY_RELATED_SERIES:
                obj["00201206"] = {"vr": "IS", "Value": [n_series]}
            else:
                obj["00201208"] = {"vr": "IS", "Value": [n_inst]}
        if want_series_count and n_series_inst is not None:
            obj["00201209"] = {"vr": "IS", "Value": [n_series_inst]}
        obj["00081190"] = {"vr": "UR", "Value": [url]}
        out.append(dict(sorted(obj.items())))
    return out


def _multi(vr: str, text: str) -> dict[str, Any]:
    return {"vr": vr, "Value": text.split("\\")} if text else {"vr": vr}


_STUDY_COMPUTED = (
    T.MODALITIES_IN_STUDY,
    T.SOP_CLASSES_IN_STUDY,
    T.NUMBER_OF_STUDY_RELATED_SERIES,
    T.NUMBER_OF_STUDY_RELATED_INSTANCES,
)
# Per level: (hex tag, VR) of the return attributes, returned empty when absent.
_RETURN_DEFAULTS = {
    level: tuple((T.tag_hex(t), T.vr_of(t) or "UN") for t in dict.fromkeys(tags))
    for level, tags in _RETURN_KEYS.items()
}
