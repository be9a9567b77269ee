"""The catalog of an existing Alvearie deployment: its "DICOM Event Driven Ingestion" query API.

In this drop-in topology the database belongs to the Alvearie ingestion service, which
builds it from our ``ImageStoredEvent`` s. We only read it:

* ``GET {endpoint}/studies/{s}[/series/{se}[/instances/{i}]]?source={provider}`` lists the
  instances (``resource.objectName``, ``lastModified``); the objects are in our bucket, and
  their headers are read from there with ranged reads (:func:`~..objectscan.scan_object`)
  for metadata and frame offsets.
* ``POST {endpoint}/studies?source={provider}`` with the query model (``scope``, ``studyUid``,
  ``seriesUid``, ``fuzzyMatching``, ``offset``, ``limit``, ``includedFields``,
  ``queryAttributes`` keyed by decimal tag) answers QIDO; results carry ``attributes`` as
  DICOM JSON-like ``{vr, Value: [strings]}``.

It is a :class:`~.base.CatalogReader` only: no writes, no outbox. STOW sends each event
synchronously and writes nothing here (the ingestion service learns of the instance from
the event); DELETE and ``reindex`` are refused at start-up in this topology.
"""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from ..errors import CatalogError, NotFoundError
from ..models import InstanceRecord

if TYPE_CHECKING:
    from ..stores.base import ObjectStore
    from .qido import QidoQuery

_NUMERIC_VRS = frozenset({"IS", "DS", "US", "UL", "SS", "SL", "FL", "FD", "UV", "SV"})
_RETRIEVE_URL = "00081190"
_PATH_UIDS = re.compile(r"/studies/([0-9.]+)(?:/series/([0-9.]+))?(?:/instances/([0-9.]+))?/?$")
_SOP_INSTANCE_UID = 0x00080018


class RemoteCatalog:
    def __init__(
        self,
        endpoint: str,
        provider: str,
        store: ObjectStore,
        *,
        max_header_size: int = 64 << 20,
        max_frames: int = 1_000_000,
        timeout: float = 10.0,
        concurrency: int = 8,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.provider = provider
        self._store = store
        self._max_header = max_header_size
        self._max_frames = max_frames
        self._timeout = timeout
        self._concurrency = concurrency
        self._client: httpx.AsyncClient | None = None

    async def open(self) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout)

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    @property
    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            raise CatalogError("remote catalog is not open")
        return self._client

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        url = f"{self.endpoint}{path}"
        try:
            resp = await self._http.request(method, url, params={"source": self.provider}, json=body)
        except httpx.HTTPError as exc:
            raise CatalogError(f"query endpoint {url} unreachable: {exc!r}") from exc
        if resp.status_code == 404:
            return []
        if resp.status_code >= 300:
            raise CatalogError(f"query endpoint {url} answered {resp.status_code}")
        try:
            data = resp.json()
        except ValueError as exc:
            raise CatalogError(f"query endpoint {url} answered something that is not JSON") from exc
        if not isinstance(data, list):
            raise CatalogError(f"query endpoint {url} answered {type(data).__name__}, expected a list")
        return [r for r in data if isinstance(r, dict)]

    async def check(self) -> None:
        # Any answer (a 404 for a study that does not exist included) means it is up.
        await self._call("GET", "/studies/1.2.3")

    # -- reads ----------------------------------------------------------------------------

    async def _records(self, results: list[dict[str, Any]]) -> tuple[list[InstanceRecord], list[str]]:
        """The records of the listed objects, and why listed objects were left out: an
        object that fails the ingest pixel-data check is not retrievable (as if absent)."""
        from ..objectscan import UncheckedObjectError, scan_object  # pydicom: loaded on first use

        slots = asyncio.Semaphore(self._concurrency)
        refused: list[str] = []

        async def one(result: dict[str, Any]) -> InstanceRecord | None:
            name = (result.get("resource") or {}).get("objectName")
            if not name:
                return None
            async with slots:
                try:
                    return await scan_object(
                        self._store, str(name), max_header_size=self._max_header, max_frames=self._max_frames
                    )
                except UncheckedObjectError as exc:
                    refused.append(exc.reason)
                    return None
                except NotFoundError:
                    return None  # listed but gone from the bucket: not retrievable

        found = await asyncio.gather(*(one(r) for r in results))
        return [r for r in found if r is not None], refused

    async def get_instance(
        self, study_uid: str, series_uid: str | None, sop_instance_uid: str
    ) -> InstanceRecord | None:
        if series_uid is None:
            series_uid = await self._series_of(study_uid, sop_instance_uid)
            if series_uid is None:
                return None
        path = f"/studies/{quote(study_uid)}/series/{quote(series_uid)}/instances/{quote(sop_instance_uid)}"
        records, refused = await self._records(await self._call("GET", path))
        found = next((r for r in records if r.sop_instance_uid == sop_instance_uid), None)
        if found is None and refused:
            raise NotFoundError(f"instance {sop_instance_uid} is not retrievable: {refused[0]}")
        return found

    async def _series_of(self, study_uid: str, sop_instance_uid: str) -> str | None:
        model = _model("INSTANCE", study_uid, None, {_SOP_INSTANCE_UID: sop_instance_uid})
        for result in await self._call("POST", "/studies", model):
            uids = _uids_of(result.get("attributes") or {})
            if uids[1]:
                return uids[1]
        return None

    async def list_instances(self, study_uid: str, series_uid: str | None = None) -> list[InstanceRecord]:
        path = f"/studies/{quote(study_uid)}"
        if series_uid is not None:
            path += f"/series/{quote(series_uid)}"
        found, refused = await self._records(await self._call("GET", path))
        records = [
            r
            for r in found
            if r.study_uid == study_uid and (series_uid is None or r.series_uid == series_uid)
        ]
        if not records and refused:
            raise NotFoundError(f"no retrievable instance: {refused[0]}")
        records.sort(key=_instance_order)
        return records

    async def search(self, query: QidoQuery, base_url: str = "") -> list[dict[str, Any]]:
        attributes: dict[int, str] = {}
        for m in query.matches:
            if m.sequence is not None or m.kind == "empty":
                continue
            if m.kind == "range":
                attributes[m.tag] = f"{m.values[0]}-{m.values[1]}"
            elif m.kind == "datetime":
                # The query API has no combined date-time matching: the date range alone
                # (a superset of the combined range) is what it can answer.
                attributes[m.tag] = f"{m.values[0]}-{m.values[2]}"
            else:
                attributes[m.tag] = ",".join(m.values)
        model = _model(query.level.upper(), query.study_uid, query.series_uid, attributes)
        model.update(
            fuzzyMatching=query.fuzzy,
            offset=query.offset,
            limit=query.limit or 0,
            includedFields=[f"{t:08X}" for t in query.includefields],
        )
        results = await self._call("POST", "/studies", model)
        return [_to_dicom_json(r.get("attributes") or {}, query, base_url) for r in results]


def _instance_order(r: InstanceRecord) -> tuple[str, bool, int, str]:
    return (r.series_uid, r.instance_number is None, r.instance_number or 0, r.sop_instance_uid)


def _model(
    scope: str, study_uid: str | None, series_uid: str | None, attributes: dict[int, str]
) -> dict[str, Any]:
    """The ``DicomQueryModel`` JSON (``queryAttributes`` is a ``Map<Integer, String>``)."""
    return {
        "scope": scope,
        "studyUid": study_uid,
        "seriesUid": series_uid,
        "fuzzyMatching": False,
        "offset": 0,
        "limit": 0,
        "includedFields": [],
        "queryAttributes": {str(tag): value for tag, value in attributes.items()},
    }


def _uids_of(attributes: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    url = (attributes.get(_RETRIEVE_URL) or {}).get("Value") or [""]
    match = _PATH_UIDS.search(str(url[0] or ""))
    return (match.group(1), match.group(2), match.group(3)) if match else (None, None, None)


def _to_dicom_json(attributes: dict[str, Any], query: QidoQuery, base_url: str) -> dict[str, Any]:
    """An Alvearie result's attributes as PS3.18 Annex F DICOM JSON, with our RetrieveURL."""
    out: dict[str, Any] = {}
    for tag, attr in attributes.items():
        if not isinstance(attr, dict) or tag == _RETRIEVE_URL:
            continue
        vr = str(attr.get("vr", "UN"))
        element: dict[str, Any] = {"vr": vr}
        values = [v for v in attr.get("Value") or [] if v is not None]
        if values:
            element["Value"] = [_json_value(vr, v) for v in values]
        out[tag.upper()] = element
    study, series, sop = _uids_of(attributes)
    study = study or query.study_uid or _first(out, "0020000D")
    series = series or query.series_uid or _first(out, "0020000E")
    sop = sop or _first(out, "00080018")
    if study and "0020000D" not in out:
        out["0020000D"] = {"vr": "UI", "Value": [study]}
    if query.level != "study" and series and "0020000E" not in out:
        out["0020000E"] = {"vr": "UI", "Value": [series]}
    if study:
        url = f"{base_url}/studies/{study}"
        if query.level != "study" and series:
            url += f"/series/{series}"
            if query.level == "instance" and sop:
                url += f"/instances/{sop}"
        out[_RETRIEVE_URL] = {"vr": "UR", "Value": [url]}
    return dict(sorted(out.items()))


def _first(out: dict[str, Any], tag: str) -> str | None:
    values = (out.get(tag) or {}).get("Value") or []
    return str(values[0]) if values else None


def _json_value(vr: str, value: Any) -> Any:
    if vr == "PN":
        return {"Alphabetic": str(value)}
    if vr in _NUMERIC_VRS:
        try:
            number = float(value)
        except (TypeError, ValueError):
            return value
        return int(number) if number.is_integer() else number
    return str(value)
