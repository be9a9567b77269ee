"""A small fake of Alvearie's "DICOM Event Driven Ingestion" service, from its contract.

Like the real one it learns about instances only from ``ImageStoredEvent`` CloudEvents
(``POST /events``, refused with 503 while ``refusing``), and answers the query API:

* ``GET /query/studies/{s}[/series/{se}[/instances/{i}]]?source=`` -> a list of
  ``{"attributes": {}, "resource": {"objectName": ...}, "lastModified": ...}``;
* ``POST /query/studies?source=`` with a ``DicomQueryModel`` (``scope``, ``studyUid``,
  ``seriesUid``, ``queryAttributes`` keyed by decimal tag, ``offset``, ``limit``) -> results
  whose ``attributes`` map ``"GGGGEEEE"`` to ``{"vr", "Value": [strings]}``, as
  ``RetrieveService.handle*Query`` builds them (``resource`` and ``lastModified`` null).
"""

from __future__ import annotations

import datetime
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from tests.httpserver import BackgroundServer, QuietHandler

STUDY_UID, SERIES_UID, SOP_UID = "0020000D", "0020000E", "00080018"


@dataclass
class FakeInstance:
    provider: str
    object_name: str
    wado_external: str
    elements: dict[str, dict[str, Any]]
    last_modified: str

    def value(self, tag: str) -> str:
        return str((self.elements.get(tag) or {}).get("value") or "")

    def vr(self, tag: str) -> str:
        return str((self.elements.get(tag) or {}).get("vr") or "UN")


@dataclass
class AlvearieFake:
    port: int = 0
    refusing: bool = False
    #: Event deliveries answered 503 while refusing.
    refused: int = 0
    instances: list[FakeInstance] = field(default_factory=list)
    events: list[dict[str, str]] = field(default_factory=list)
    queries: list[dict[str, Any]] = field(default_factory=list)
    _http: BackgroundServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def query_endpoint(self) -> str:
        return self.base + "/query"

    @property
    def sink(self) -> str:
        return self.base + "/events"

    def start(self) -> AlvearieFake:
        fake = self

        class Handler(QuietHandler):
            def _reply(self, status: int, body: Any = None) -> None:
                data = orjson.dumps(body) if body is not None else b""
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                url = urlsplit(self.path)
                source = parse_qs(url.query).get("source", [""])[0]
                if url.path == "/events":
                    if fake.refusing:
                        with fake._lock:
                            fake.refused += 1
                        return self._reply(503)
                    fake.ingest({k.lower(): v for k, v in self.headers.items()}, orjson.loads(body))
                    return self._reply(202)
                if url.path == "/query/studies":
                    model = orjson.loads(body)
                    with fake._lock:
                        fake.queries.append(model)
                    return self._reply(200, fake.query(model, source))
                return self._reply(404)

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                source = parse_qs(url.query).get("source", [""])[0]
                parts = url.path.strip("/").split("/")
                if parts[:2] != ["query", "studies"] or len(parts) not in (3, 5, 7):
                    return self._reply(404)
                wanted = {STUDY_UID: parts[2]}
                if len(parts) >= 5:
                    wanted[SERIES_UID] = parts[4]
                if len(parts) == 7:
                    wanted[SOP_UID] = parts[6]
                return self._reply(200, fake.resources(wanted, source))

        self._http = BackgroundServer(self.port)
        self._http.serve(Handler)
        self.port = self._http.port
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.stop()

    # -- the ingestion side ----------------------------------------------------------------

    def ingest(self, headers: dict[str, str], event: dict[str, Any]) -> None:
        elements = {e["group"] + e["element"]: e for e in event["image"]["elements"]}
        elements["00020010"] = {"vr": "UI", "value": event["image"]["transferSyntaxUID"]}
        store = event["store"]
        now = datetime.datetime.now(datetime.UTC).isoformat()
        with self._lock:
            self.events.append(headers)
            self.instances = [i for i in self.instances if i.value(SOP_UID) != elements[SOP_UID]["value"]]
            instance = FakeInstance(
                store["provider"], store["objectName"], store["wadoExternalEndpoint"], elements, now
            )
            self.instances.append(instance)

    # -- the query side --------------------------------------------------------------------

    def resources(self, wanted: dict[str, str], source: str) -> list[dict[str, Any]]:
        with self._lock:
            found = [
                i
                for i in self.instances
                if i.provider == source and all(i.value(t) == v for t, v in wanted.items())
            ]
        return [
            {"attributes": {}, "resource": {"objectName": i.object_name}, "lastModified": i.last_modified}
            for i in found
        ]

    def query(self, model: dict[str, Any], source: str) -> list[dict[str, Any]]:
        attrs = {f"{int(k):08X}": v for k, v in (model.get("queryAttributes") or {}).items()}
        with self._lock:
            selected = [i for i in self.instances if i.provider == source]
        if model.get("studyUid"):
            selected = [i for i in selected if i.value(STUDY_UID) == model["studyUid"]]
        if model.get("seriesUid"):
            selected = [i for i in selected if i.value(SERIES_UID) == model["seriesUid"]]
        for tag, value in attrs.items():
            options = value.split(",")
            selected = [i for i in selected if i.value(tag) in options]
        scope = model.get("scope") or "STUDY"
        key = {"STUDY": STUDY_UID, "SERIES": SERIES_UID, "INSTANCE": SOP_UID}[scope]
        groups: dict[str, list[FakeInstance]] = {}
        for i in selected:
            groups.setdefault(i.value(key), []).append(i)
        results = [self._result(scope, members) for _, members in sorted(groups.items())]
        offset = int(model.get("offset") or 0)
        limit = int(model.get("limit") or 0) or 1000
        return results[offset : offset + limit]

    @staticmethod
    def _result(scope: str, members: list[FakeInstance]) -> dict[str, Any]:
        first = members[0]
        out: dict[str, Any] = {}

        def add(tag: str, vr: str, *values: str) -> None:
            out[tag] = {"vr": vr, "Value": list(values)}

        base = first.wado_external
        study, series, sop = first.value(STUDY_UID), first.value(SERIES_UID), first.value(SOP_UID)
        if scope == "STUDY":
            for tag in ("00080020", "00080030", STUDY_UID, "00200010"):
                add(tag, first.vr(tag), first.value(tag))
            add("00201206", "IS", str(len({m.value(SERIES_UID) for m in members})))
            add("00201208", "IS", str(len(members)))
            add("00080061", "CS", *sorted({m.value("00080060") for m in members}))
            add("00080062", "CS", *sorted({m.value("00080016") for m in members}))
            add("00081190", "UR", f"{base}/studies/{study}")
            for tag in ("00100010", "00100020", "00080050", "00080090"):  # study attributes
                add(tag, first.vr(tag), first.value(tag))
        elif scope == "SERIES":
            add("00080060", "CS", first.value("00080060"))
            add(SERIES_UID, "UI", series)
            add("00200011", "IS", first.value("00200011"))
            add("00201209", "IS", str(len(members)))
            add("00081190", "UR", f"{base}/studies/{study}/series/{series}")
        else:
            add("00080016", "UI", first.value("00080016"))
            add(SOP_UID, "UI", sop)
            add("00020010", "UI", first.value("00020010"))
            add("00200011", "IS", first.value("00200013"))  # sic: RetrieveService puts the number there
            add("00081190", "UR", f"{base}/studies/{study}/series/{series}/instances/{sop}")
        return {"attributes": out, "resource": None, "lastModified": None}
