"""Rendered and thumbnail images (PS3.18 8.3.5.1, 10.4.1.1.3): Pillow + numpy + pydicom.

Query parameters: ``window=center,width[,function]`` (``linear``, ``linear-exact``,
``sigmoid``), ``viewport=vw,vh[,sx,sy,sw,sh]`` (crop the source region sx,sy,sw,sh, then
scale to fit in vw x vh keeping the aspect ratio), ``quality`` (1-100, JPEG). Without a
window, the instance's own VOI (Window Center/Width or VOI LUT) applies, else the full
range of the frame. MONOCHROME1 is inverted so that the image looks as intended.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset

from ..errors import BadRequestError, NotAcceptableError
from .accept import ANY, MediaRange, describe
from .transcode import DECODE_ERRORS

log = logging.getLogger("dicomweb.wado")

JPEG, PNG, GIF = "image/jpeg", "image/png", "image/gif"
_FORMATS = {JPEG: "JPEG", PNG: "PNG", GIF: "GIF"}
THUMBNAIL_SIZE = 128
MAX_VIEWPORT = 8192
#: Rows converted to 8 bits at a time: bounds the float temporaries of a large frame.
_BLOCK_ROWS = 512


@dataclass(frozen=True, slots=True)
class RenderOptions:
    window: tuple[float, float, str] | None = None
    viewport: tuple[int, int, float | None, float | None, float | None, float | None] | None = None
    quality: int = 90


def choose_image_type(ranges: list[MediaRange]) -> str:
    for r in ranges:
        if r.multipart:
            continue
        if r.media_type in (ANY, "image/*"):
            return JPEG
        if r.media_type in _FORMATS:
            return r.media_type
    raise NotAcceptableError(
        f"rendered images are available as {JPEG}, {PNG} or {GIF}; Accept asked for {describe(ranges)}"
    )


def _numbers(name: str, raw: str, count: tuple[int, ...]) -> list[str]:
    items = [v.strip() for v in raw.split(",")]
    if len(items) not in count:
        raise BadRequestError(
            f"{name}={raw!r}: expected {' or '.join(map(str, count))} comma-separated values"
        )
    return items


#: Window centre/width and viewport source coordinates beyond this are absurd (400).
_MAX_ABS = 1e9


def _finite(name: str, text: str, *, limit: float = _MAX_ABS) -> float:
    try:
        value = float(text)
    except ValueError:
        raise BadRequestError(f"{name} {text[:40]!r} is not a number") from None
    if not math.isfinite(value) or abs(value) > limit:
        raise BadRequestError(f"{name} {text[:40]!r} must be a finite number within +-{limit:g}")
    return value


def _int(name: str, text: str) -> int:
    if not text.isdigit() or len(text) > 9:
        raise BadRequestError(f"{name} {text[:40]!r} is not a positive integer")
    return int(text)


def parse_options(params: dict[str, str], *, thumbnail: bool = False) -> RenderOptions:
    """The rendering query parameters, each validated: 400 with the reason otherwise."""
    window = None
    viewport = None
    quality = 90
    if params.get("window"):
        items = _numbers("window", params["window"], (2, 3))
        function = items[2].lower() if len(items) == 3 else "linear"
        if function not in ("linear", "linear-exact", "sigmoid"):
            raise BadRequestError(
                f"window function {function[:40]!r}: expected linear, linear-exact or sigmoid"
            )
        center, width = _finite("window center", items[0]), _finite("window width", items[1])
        if width <= 0 and function != "linear-exact":
            raise BadRequestError(f"window width must be positive, not {items[1][:40]}")
        if width < 0:
            raise BadRequestError(f"window width must not be negative, not {items[1][:40]}")
        window = (center, width, function)
    if params.get("viewport"):
        items = _numbers("viewport", params["viewport"], (2, 6))
        vw, vh = _int("viewport width", items[0]), _int("viewport height", items[1])
        if not (0 < vw <= MAX_VIEWPORT and 0 < vh <= MAX_VIEWPORT):
            raise BadRequestError(f"viewport size {vw}x{vh} must be within 1..{MAX_VIEWPORT}")
        names = ("sx", "sy", "sw", "sh")
        rest = [_finite(f"viewport {n}", v) if v else None for n, v in zip(names, items[2:], strict=False)]
        rest += [None] * (4 - len(rest))
        if rest[2] == 0 or rest[3] == 0:
            raise BadRequestError("viewport source width and height must not be 0")
        viewport = (vw, vh, rest[0], rest[1], rest[2], rest[3])
    elif thumbnail:
        viewport = (THUMBNAIL_SIZE, THUMBNAIL_SIZE, None, None, None, None)
    if params.get("quality"):
        quality = _int("quality", params["quality"].strip())
        if not 1 <= quality <= 100:
            raise BadRequestError(f"quality must be within 1..100, not {quality}")
    return RenderOptions(window, viewport, quality)


def _grey_transform(ds: Dataset, options: RenderOptions) -> tuple[Callable[[np.ndarray], np.ndarray], bool]:
    """Stored values to display values (float32), and whether the result needs stretching
    to 0..1 over the whole frame (True) or is already 0..1 (a window was given)."""
    from pydicom.pixels.processing import apply_modality_lut, apply_voi_lut

    def modality(block: np.ndarray) -> np.ndarray:
        out: np.ndarray = np.asarray(apply_modality_lut(block, ds), dtype=np.float32)
        return out

    if options.window is None:
        if "VOILUTSequence" in ds or "WindowCenter" in ds:

            def voi(block: np.ndarray) -> np.ndarray:
                data = modality(block)
                try:
                    out: np.ndarray = np.asarray(apply_voi_lut(data, ds), dtype=np.float32)
                except (ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
                    # A malformed VOI (bad LUT descriptor, non-numeric window): full range instead.
                    log.info("VOI of the instance ignored for rendering: %s", exc)
                    return data
                return out

            return voi, True
        return modality, True
    center, width, function = options.window

    def windowed(block: np.ndarray) -> np.ndarray:
        data = modality(block)
        if function == "sigmoid":
            with np.errstate(over="ignore"):
                out: np.ndarray = 1.0 / (1.0 + np.exp(-4.0 * (data - center) / width))
            return out.astype(np.float32)
        if function == "linear-exact":
            w = max(width, 1e-6)
            return np.clip((data - (center - w / 2)) / w, 0.0, 1.0).astype(np.float32)
        # PS3.3 C.11.2.1.2.1 linear function.
        return np.clip((data - (center - 0.5)) / max(width - 1, 1e-6) + 0.5, 0.0, 1.0).astype(np.float32)

    return windowed, False


def _blocks(arr: np.ndarray) -> list[slice]:
    return [slice(i, i + _BLOCK_ROWS) for i in range(0, max(arr.shape[0], 1), _BLOCK_ROWS)]


def to_8bit(arr: np.ndarray, ds: Dataset, options: RenderOptions) -> np.ndarray:
    """A decoded frame (as pydicom gives it) to a uint8 image (H, W) or (H, W, 3), a block
    of rows at a time (float temporaries stay small whatever the frame size)."""
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    out = np.empty(
        arr.shape[:2] + ((3,) if arr.ndim == 3 or photometric == "PALETTE COLOR" else ()), np.uint8
    )
    if photometric == "PALETTE COLOR":
        from pydicom.pixels.processing import apply_color_lut

        for rows in _blocks(arr):
            rgb = apply_color_lut(arr[rows], ds)
            top = 2 ** (16 if rgb.dtype.itemsize > 1 else 8) - 1
            out[rows] = (rgb.astype(np.float32) / top * 255).clip(0, 255).astype(np.uint8)
        return out
    if arr.ndim == 3:  # colour, already RGB (pydicom converts YBR by default)
        if arr.dtype == np.uint8 and options.window is None:
            return arr
        top = max(2 ** int(ds.get("BitsStored", 8) or 8) - 1, 1)
        for rows in _blocks(arr):
            out[rows] = (arr[rows].astype(np.float32) / top * 255).clip(0, 255).astype(np.uint8)
        return out
    transform, stretch = _grey_transform(ds, options)
    lo, hi = 0.0, 1.0
    if stretch:
        lo, hi = math.inf, -math.inf
        for rows in _blocks(arr):
            block = transform(arr[rows])
            if block.size:
                lo, hi = min(lo, float(np.nanmin(block))), max(hi, float(np.nanmax(block)))
    invert = photometric == "MONOCHROME1"
    span = hi - lo if hi > lo else 0.0
    for rows in _blocks(arr):
        unit = transform(arr[rows])
        unit = (unit - lo) / span if span else np.zeros_like(unit) if stretch else unit
        if invert:
            unit = 1.0 - unit
        out[rows] = np.nan_to_num(unit * 255.0 + 0.5, nan=0.0).clip(0, 255).astype(np.uint8)
    return out


def apply_viewport(image: Image.Image, viewport: RenderOptions) -> Image.Image:
    if viewport.viewport is None:
        return image
    vw, vh, sx, sy, sw, sh = viewport.viewport
    if sx is not None or sy is not None or sw is not None or sh is not None:
        x0 = sx or 0.0
        y0 = sy or 0.0
        w = sw if sw is not None else image.width - x0
        h = sh if sh is not None else image.height - y0
        # The region is clipped to the image: a crop box far outside it would make Pillow
        # allocate the whole box.
        left = max(0, round(min(x0, x0 + w)))
        top = max(0, round(min(y0, y0 + h)))
        right = min(image.width, round(max(x0, x0 + w)))
        bottom = min(image.height, round(max(y0, y0 + h)))
        if right <= left or bottom <= top:
            raise BadRequestError(
                f"viewport region {x0:g},{y0:g},{w:g},{h:g} lies outside the"
                f" {image.width}x{image.height} image"
            )
        image = image.crop((left, top, right, bottom))
        if w < 0:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if h < 0:
            image = image.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    scale = min(vw / max(image.width, 1), vh / max(image.height, 1))
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR)


def render(ds: Dataset, options: RenderOptions, media_type: str) -> bytes:
    """Render the first frame of ``ds`` (a data set holding one frame) as ``media_type``."""
    return encode(render_image(ds, options), media_type, options)


def encode(image: Image.Image, media_type: str, options: RenderOptions) -> bytes:
    out = io.BytesIO()
    fmt = _FORMATS[media_type]
    if fmt == "JPEG":
        image.save(out, format=fmt, quality=options.quality)
    else:
        image.save(out, format=fmt)
    return out.getvalue()


def encode_animation(images: list[Image.Image], frame_ms: int) -> bytes:
    """Frames as one animated GIF (PS3.18 Table 8.7.4-1: image/gif for multi-frame images)."""
    out = io.BytesIO()
    images[0].save(out, format="GIF", save_all=True, append_images=images[1:], duration=frame_ms, loop=0)
    return out.getvalue()


def render_image(ds: Dataset, options: RenderOptions) -> Image.Image:
    """The first frame of ``ds`` as an 8-bit Pillow image, window and viewport applied."""
    try:
        arr = ds.pixel_array
    except Image.DecompressionBombError as exc:
        raise NotAcceptableError(f"the image is too large to render: {exc}") from exc
    except DECODE_ERRORS as exc:
        raise NotAcceptableError(f"the pixel data cannot be decoded for rendering: {exc}") from exc
    # The encoded frame is not needed any more: free it before the 8-bit copy is made.
    ds._pixel_array = None
    del ds["PixelData"]
    if arr.ndim == 4 or (arr.ndim == 3 and int(ds.get("SamplesPerPixel", 1)) == 1):
        arr = arr[0]
    pixels = to_8bit(arr, ds, options)
    del arr
    image = Image.fromarray(pixels, mode="RGB" if pixels.ndim == 3 else "L")
    del pixels
    return apply_viewport(image, options)
