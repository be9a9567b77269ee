"""Resource limits: every per-request cost is bounded by one of these, whatever a request or
a stored header claims. Parsed once from the environment (see README, "Limits")."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import ConfigError

KiB = 1024
MiB = 1024 * KiB


@dataclass(frozen=True, slots=True)
class Limits:
    #: Largest request line + header block one request may send (bytes).
    max_request_header_size: int = 64 * KiB
    #: Seconds a client has to send a complete request line and headers.
    header_timeout: float = 10.0
    #: Seconds a request body may go without a byte arriving.
    body_idle_timeout: float = 30.0
    #: Seconds a response may wait for a client that does not read.
    send_idle_timeout: float = 60.0
    #: Seconds an idle keep-alive connection stays open.
    keep_alive_timeout: float = 30.0
    #: NumberOfFrames above this is refused at ingest (0xC000).
    max_frames: int = 1_000_000
    #: Largest stored object that is converted to another transfer syntax (bytes).
    max_transcode_size: int = 1024 * MiB
    #: Largest decoded pixel data one conversion, frame decode or render may produce (bytes).
    max_decoded_size: int = 1024 * MiB
    #: Largest source image (rows x columns) rendered; also Pillow's decompression-bomb limit.
    max_render_pixels: int = 100_000_000
    #: Frames put into one animated rendering of a multi-frame instance.
    max_render_frames: int = 500
    #: Conversions, decodes and renders running at once (each holds up to the caps above);
    #: default: half the CPU cores, at least one (the event loop keeps a core).
    decode_concurrency: int = field(default_factory=lambda: max(1, (os.cpu_count() or 2) // 2))


def _number(env: Mapping[str, str], name: str, default: float, minimum: float, integer: bool) -> float:
    raw = env.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{name}={raw!r} is not {kind}") from None
    if not value >= minimum or value != value or value == float("inf"):
        raise ConfigError(f"{name}={raw} must be a finite number >= {minimum}")
    return value


def load_limits(env: Mapping[str, str]) -> Limits:
    d = Limits()

    def i(name: str, default: int, minimum: int = 1) -> int:
        return int(_number(env, name, default, minimum, True))

    def f(name: str, default: float, minimum: float = 0.1) -> float:
        return _number(env, name, default, minimum, False)

    return Limits(
        max_request_header_size=i("MAX_REQUEST_HEADER_SIZE", d.max_request_header_size, 1024),
        header_timeout=f("HEADER_TIMEOUT", d.header_timeout),
        body_idle_timeout=f("BODY_IDLE_TIMEOUT", d.body_idle_timeout),
        send_idle_timeout=f("SEND_IDLE_TIMEOUT", d.send_idle_timeout),
        keep_alive_timeout=f("KEEP_ALIVE_TIMEOUT", d.keep_alive_timeout),
        max_frames=i("MAX_FRAMES", d.max_frames),
        max_transcode_size=i("MAX_TRANSCODE_SIZE", d.max_transcode_size, 0),
        max_decoded_size=i("MAX_DECODED_SIZE", d.max_decoded_size, MiB),
        max_render_pixels=i("MAX_RENDER_PIXELS", d.max_render_pixels, 1024),
        max_render_frames=i("MAX_RENDER_FRAMES", d.max_render_frames),
        decode_concurrency=i("DECODE_CONCURRENCY", d.decode_concurrency),
    )
