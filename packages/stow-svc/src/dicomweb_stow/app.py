"""STOW-RS (PS3.18 10.5): ``POST /studies`` and ``POST /studies/{study}``. Thin: the work is in
:mod:`dicomweb_core.ingest`."""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from dicomweb_core.auth.audit import note_stored
from dicomweb_core.errors import MediaTypeError, MultipartError, PayloadTooLargeError
from dicomweb_core.ingest import StowPipeline
from dicomweb_core.multipart import boundary_from_content_type, parse_content_type
from dicomweb_core.observability.app import service_metrics
from dicomweb_core.runtime import Runtime
from dicomweb_core.server import Service, mount_root, request_base_url
from dicomweb_core.stowresponse import failure_warnings, response_dataset, to_json, to_xml
from dicomweb_core.uids import validate_uid

from .form import form_parts

ACCEPTED_TYPES = ("application/dicom", "")


class StowEndpoint:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.pipeline = StowPipeline(runtime.store, runtime.writer, runtime.ingest_options)
        self.wado_external = runtime.settings.wado_external_endpoint.rstrip("/")
        self.public_base = runtime.settings.public_base_url
        self.metrics = service_metrics(runtime.settings.observability)

    async def handle(self, request: Request) -> Response:
        study_uid = request.path_params.get("study")
        if study_uid is not None:
            validate_uid(study_uid, "StudyInstanceUID")
        cap = self.runtime.settings.max_request_size
        declared = request.headers.get("content-length", "")
        if cap and declared.isdigit() and int(declared) > cap:
            raise PayloadTooLargeError(
                f"request body of {declared} bytes is over the configured cap of {cap} bytes"
            )
        content_type = request.headers.get("content-type", "")
        media_type, params = parse_content_type(content_type)
        body = _body(request)
        if media_type == "multipart/form-data":
            outcome = await self.pipeline.run(*form_parts(body, content_type), study_uid)
        else:
            boundary = boundary_from_content_type(content_type)
            part_type = params.get("type", "").lower()
            if part_type not in ACCEPTED_TYPES:
                raise MediaTypeError(
                    f'multipart/related type {part_type!r} is not supported; send type="application/dicom"'
                )
            outcome = await self.pipeline.run(body, boundary, study_uid)
        if outcome.stored:
            self.runtime.events_committed()
        note_stored(
            request.scope,
            [(p.record.study_uid, p.record.series_uid, p.record.sop_instance_uid) for p in outcome.stored],
            len(outcome.failed),
        )
        if self.metrics is not None:
            self.metrics.stow([p.stored.size for p in outcome.stored], [f.status for f in outcome.failed])
        ds = response_dataset(outcome, wado_base=self._wado_base(request), study_uid=study_uid)
        warnings = failure_warnings(outcome, request.url.netloc or "dicomweb")
        if "application/dicom+xml" in request.headers.get("accept", "") and "json" not in request.headers.get(
            "accept", ""
        ):
            return Response(
                to_xml(ds),
                status_code=outcome.http_status,
                media_type="application/dicom+xml",
                headers=warnings,
            )
        return Response(
            to_json(ds),
            status_code=outcome.http_status,
            media_type="application/dicom+json",
            headers=warnings,
        )

    def _wado_base(self, request: Request) -> str:
        if self.wado_external:
            return self.wado_external
        root = mount_root(request)
        wado_root = "/dicomweb" if root == "/dicomweb" else "/wado-rs"
        return request_base_url(request, self.public_base) + wado_root


async def _body(request: Request) -> AsyncIterator[bytes]:
    try:
        async for chunk in request.stream():
            if chunk:
                yield chunk
    except ClientDisconnect:
        raise MultipartError("client disconnected before the end of the body") from None


def create_app(runtime: Runtime) -> Service:
    endpoint = StowEndpoint(runtime)
    routes: list[BaseRoute] = [
        Route("/studies", endpoint.handle, methods=["POST"]),
        Route("/studies/{study}", endpoint.handle, methods=["POST"]),
    ]
    return Service(name="stow", root="/stow-rs", routes=routes)
