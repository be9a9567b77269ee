"""WADO-RS + QIDO-RS routes (PS3.18 10.4, 10.6) and DELETE. Thin: the work is in
:mod:`dicomweb_core.wado`; this module maps requests to it and replies to responses."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from dicomweb_core.catalog.qido import Level as QueryLevel
from dicomweb_core.errors import BadRequestError, NotFoundError
from dicomweb_core.runtime import Runtime
from dicomweb_core.server import Service, mount_root, request_base_url
from dicomweb_core.wado import search as qido
from dicomweb_core.wado.budget import Budget
from dicomweb_core.wado.delete import delete
from dicomweb_core.wado.frames import parse_frame_list
from dicomweb_core.wado.images import Renderer, require_pixels
from dicomweb_core.wado.pixels import PixelRetriever
from dicomweb_core.wado.reply import Ask, Reply
from dicomweb_core.wado.retrieve import Level, Retriever, level

Handler = Callable[[Request], Awaitable[Response]]


def to_response(reply: Reply, *, head: bool = False) -> Response:
    if head:
        # A HEAD reply carries the GET's headers; Content-Length only when the reply knows it.
        response = Response(b"", status_code=reply.status, headers=reply.headers, media_type=reply.media_type)
        if "Content-Length" not in reply.headers:
            del response.headers["content-length"]
        return response
    if isinstance(reply.body, bytes):
        return Response(
            reply.body, status_code=reply.status, headers=reply.headers, media_type=reply.media_type
        )
    return StreamingResponse(
        reply.body, status_code=reply.status, headers=reply.headers, media_type=reply.media_type
    )


def _tag(text: str) -> int:
    try:
        if len(text) != 8:
            raise ValueError
        return int(text, 16)
    except ValueError:
        raise BadRequestError(f"invalid bulk data tag {text[:40]!r}: expected 8 hex digits") from None


class WadoEndpoints:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        budget = Budget(runtime.settings.limits)
        self.retriever = Retriever(runtime.store, runtime.catalog, budget)
        self.pixels = PixelRetriever(runtime.store, budget)
        self.renderer = Renderer(runtime.store, budget)
        self.public_base = runtime.settings.public_base_url
        options = runtime.ingest_options
        self.emit_events = options.emit_events
        self.event_source = options.event_source
        self.qido_max_limit = runtime.settings.qido_max_limit

    # ------------------------------------------------------------------ glue

    def ask(self, request: Request) -> Ask:
        h = request.headers
        return Ask(
            accept=h.get("accept", ""),
            base_url=self.base_url(request),
            if_none_match=h.get("if-none-match", ""),
            if_modified_since=h.get("if-modified-since", ""),
            range=h.get("range", ""),
            params=dict(request.query_params),
        )

    def base_url(self, request: Request) -> str:
        """``scheme://host:port/root`` as the client sees it."""
        return request_base_url(request, self.public_base) + mount_root(request)

    @staticmethod
    def at(request: Request) -> Level:
        p = request.path_params
        return level(p["study"], p.get("series"), p.get("instance"))

    # ------------------------------------------------------------------ WADO-RS

    async def retrieve(self, request: Request) -> Response:
        head = request.method == "HEAD"  # answered from the catalog: the object is not read
        reply = await self.retriever.instances(self.at(request), self.ask(request), head=head)
        return to_response(reply, head=head)

    async def metadata(self, request: Request) -> Response:
        return to_response(await self.retriever.metadata(self.at(request), self.ask(request)))

    async def frames(self, request: Request) -> Response:
        at = self.at(request)
        numbers = parse_frame_list(request.path_params["frames"])
        record = (await self.retriever.records(at))[0]
        head = request.method == "HEAD"
        ask = self.ask(request)
        try:
            reply = await self.pixels.frames(record, numbers, ask, head=head)
        except NotFoundError:
            # The object went before a byte was sent: replaced by a re-store? Then serve that.
            fresh = None if head else await self.retriever.superseded(record)
            if fresh is None:
                raise
            reply = await self.pixels.frames(fresh, numbers, ask, head=head)
        return to_response(reply, head=head)

    async def bulkdata(self, request: Request) -> Response:
        at = self.at(request)
        tag = _tag(request.path_params["tag"])
        record = (await self.retriever.records(at))[0]
        head = request.method == "HEAD"
        return to_response(await self.pixels.bulkdata(record, tag, self.ask(request), head=head), head=head)

    async def rendered(self, request: Request) -> Response:
        return await self._image(request, thumbnail=False)

    async def thumbnail(self, request: Request) -> Response:
        return await self._image(request, thumbnail=True)

    async def _image(self, request: Request, *, thumbnail: bool) -> Response:
        at = self.at(request)
        frames = request.path_params.get("frames")
        numbers = parse_frame_list(frames) if frames is not None else None
        records = await self.retriever.records(at)
        require_pixels(records)
        head = request.method == "HEAD"  # answered from the catalog: nothing is read or rendered
        reply = await self.renderer.rendered(
            records, self.ask(request), frames=numbers, thumbnail=thumbnail, head=head
        )
        return to_response(reply, head=head)

    # ------------------------------------------------------------------ QIDO-RS

    def search(self, level_name: QueryLevel) -> Handler:
        async def handler(request: Request) -> Response:
            p = request.path_params
            reply = await qido.search(
                self.runtime.catalog,
                level_name,
                request.query_params.multi_items(),
                self.ask(request),
                host=request.url.netloc or "dicomweb",
                study_uid=p.get("study"),
                series_uid=p.get("series"),
                max_limit=self.qido_max_limit,
            )
            return to_response(reply)

        return handler

    # ------------------------------------------------------------------ DELETE

    async def delete(self, request: Request) -> Response:
        at = self.at(request)
        deleted = await delete(
            at,
            self.runtime.store,
            self.runtime.writer,
            emit_events=self.emit_events,
            event_source=self.event_source,
        )
        if deleted and self.emit_events:
            self.runtime.events_committed()
        return Response(status_code=204)


def create_app(runtime: Runtime) -> Service:
    e = WadoEndpoints(runtime)
    study = "/studies/{study}"
    series = study + "/series/{series}"
    instance = series + "/instances/{instance}"
    frames = instance + "/frames/{frames}"
    routes: list[BaseRoute] = [
        # QIDO-RS
        Route("/studies", e.search("study")),
        Route("/series", e.search("series")),
        Route("/instances", e.search("instance")),
        Route(study + "/series", e.search("series")),
        Route(study + "/instances", e.search("instance")),
        Route(series + "/instances", e.search("instance")),
        # WADO-RS
        Route(study, e.retrieve),
        Route(series, e.retrieve),
        Route(instance, e.retrieve),
        Route(study + "/metadata", e.metadata),
        Route(series + "/metadata", e.metadata),
        Route(instance + "/metadata", e.metadata),
        Route(frames, e.frames),
        Route(instance + "/bulkdata/{tag}", e.bulkdata),
        Route(study + "/rendered", e.rendered),
        Route(series + "/rendered", e.rendered),
        Route(instance + "/rendered", e.rendered),
        Route(frames + "/rendered", e.rendered),
        Route(study + "/thumbnail", e.thumbnail),
        Route(series + "/thumbnail", e.thumbnail),
        Route(instance + "/thumbnail", e.thumbnail),
        Route(frames + "/thumbnail", e.thumbnail),
        # DELETE
        Route(study, e.delete, methods=["DELETE"]),
        Route(series, e.delete, methods=["DELETE"]),
        Route(instance, e.delete, methods=["DELETE"]),
    ]
    return Service(name="wado", root="/wado-rs", routes=routes)
