"""QIDO-RS search (PS3.18 10.6) over :meth:`Catalog.search`: parse, search, encode.

Unsupported matching never passes silently: each warning of the parsed query becomes a
``Warning: 299 <host> "<text>"`` header (RFC 7234 form, as PS3.18 8.3.4 asks).
"""

from __future__ import annotations

import orjson

from ..catalog.base import CatalogReader
from ..catalog.qido import Level, parse_qido
from ..errors import NotAcceptableError
from ..uids import validate_uid
from .accept import ANY, DICOM_JSON, DICOM_XML, describe
from .multipart import MultipartWriter
from .reply import Ask, Reply
from .xml import to_xml


def _wants_xml(ask: Ask) -> bool:
    for r in ask.ranges:
        if r.multipart and r.part == DICOM_XML:
            return True
        if not r.multipart and r.media_type in (DICOM_JSON, "application/json", ANY, "application/*"):
            return False
    raise NotAcceptableError(
        f'search results are available as {DICOM_JSON} or multipart/related; type="{DICOM_XML}";'
        f" Accept asked for {describe(ask.ranges)}"
    )


async def search(
    catalog: CatalogReader,
    level: Level,
    params: list[tuple[str, str]],
    ask: Ask,
    *,
    host: str,
    study_uid: str | None = None,
    series_uid: str | None = None,
    max_limit: int | None = None,
) -> Reply:
    if study_uid is not None:
        validate_uid(study_uid, "StudyInstanceUID")
    if series_uid is not None:
        validate_uid(series_uid, "SeriesInstanceUID")
    xml = _wants_xml(ask)
    query = parse_qido(level, params, study_uid=study_uid, series_uid=series_uid, max_limit=max_limit)
    results = await catalog.search(query, base_url=ask.base_url)
    headers: dict[str, str] = {}
    if query.warnings:
        headers["Warning"] = ", ".join(f'299 {host} "{_quote(w)}"' for w in query.warnings)
    if xml:
        writer = MultipartWriter(DICOM_XML)
        body = writer.encode((DICOM_XML, to_xml(r)) for r in results)
        return Reply(media_type=writer.content_type, body=body, headers=headers)
    return Reply(media_type=DICOM_JSON, body=orjson.dumps(results), headers=headers)


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\r", " ").replace("\n", " ")
