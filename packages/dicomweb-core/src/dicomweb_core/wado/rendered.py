"""Rendered and thumbnail images (PS3.18 8.3.5.1, 10.4.1.1.3): Pillow + numpy + pydicom.

Query parameters: ``window=center,width[,function]`` (``linear``, ``linear-exact``,
``sigmoid``), ``viewport=vw,vh[,sx,sy,sw,sh]`` (crop the source region sx,sy,sw,sh, then
scale to fit in vw x vh keeping the aspect ratio), ``quality`` (1-100, JPEG). Without a
window, the instance's own VOI (Window Center/Width or VOI LUT) applies, else the full
range of the frame. MONOCHROME1 is inverted so that the image looks as intended.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset

from ..errors import BadRequestError, NotAcceptableError
from .accept import ANY, MediaRange, describe

JPEG, PNG, GIF = "image/jpeg", "image/png", "image/gif"
_FORMATS = {JPEG: "JPEG", PNG: "PNG", GIF: "GIF"}
THUMBNAIL_SIZE = 128


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


def parse_options(params: dict[str, str], *, thumbnail: bool = False) -> RenderOptions:
    window = None
    viewport = None
    quality = 90
    try:
        if params.get("window"):
            items = _numbers("window", params["window"], (2, 3))
            function = items[2].lower() if len(items) == 3 else "linear"
            if function not in ("linear", "linear-exact", "sigmoid"):
                raise BadRequestError(
                    f"window function {function!r}: expected linear, linear-exact or sigmoid"
                )
            center, width = float(items[0]), float(items[1])
            if width <= 0 and function != "linear-exact":
                raise BadRequestError(f"window width must be positive, not {items[1]}")
            window = (center, width, function)
        if params.get("viewport"):
            items = _numbers("viewport", params["viewport"], (2, 6))
            vw, vh = int(items[0]), int(items[1])
            if not (0 < vw <= 8192 and 0 < vh <= 8192):
                raise BadRequestError(f"viewport size {vw}x{vh} must be within 1..8192")
            rest = [float(v) if v else None for v in items[2:]] + [None] * (6 - len(items))
            viewport = (vw, vh, rest[0], rest[1], rest[2], rest[3])
        elif thumbnail:
            viewport = (THUMBNAIL_SIZE, THUMBNAIL_SIZE, None, None, None, None)
        if params.get("quality"):
            quality = int(params["quality"])
            if not 1 <= quality <= 100:
                raise BadRequestError(f"quality must be within 1..100, not {quality}")
    except ValueError as exc:
        raise BadRequestError(f"invalid rendering parameter: {exc}") from None
    return RenderOptions(window, viewport, quality)


def _voi(arr: np.ndarray, ds: Dataset, options: RenderOptions) -> np.ndarray:
    """Grey values to 0..1."""
    from pydicom.pixels.processing import apply_modality_lut, apply_voi_lut

    data = apply_modality_lut(arr, ds).astype(np.float64)
    if options.window is not None:
        center, width, function = options.window
    elif "VOILUTSequence" in ds or "WindowCenter" in ds:
        try:
            data = apply_voi_lut(data, ds).astype(np.float64)
        except Exception:
            pass
        return _stretch(data)
    else:
        return _stretch(data)
    if function == "sigmoid":
        return 1.0 / (1.0 + np.exp(-4.0 * (data - center) / width))
    if function == "linear-exact":
        width = max(width, 1e-6)
        return np.clip((data - (center - width / 2)) / width, 0.0, 1.0)
    # PS3.3 C.11.2.1.2.1 linear function.
    return np.clip((data - (center - 0.5)) / max(width - 1, 1e-6) + 0.5, 0.0, 1.0)


def _stretch(data: np.ndarray) -> np.ndarray:
    lo, hi = float(np.min(data)), float(np.max(data))
    if hi <= lo:
        return np.zeros_like(data, dtype=np.float64)
    return (data - lo) / (hi - lo)


def to_8bit(arr: np.ndarray, ds: Dataset, options: RenderOptions) -> np.ndarray:
    """A decoded frame (as pydicom gives it) to a uint8 image (H, W) or (H, W, 3)."""
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric == "PALETTE COLOR":
        from pydicom.pixels.processing import apply_color_lut

        rgb = apply_color_lut(arr, ds)
        bits = 16 if rgb.dtype.itemsize > 1 else 8
        out: np.ndarray = (rgb.astype(np.float64) / (2**bits - 1) * 255).clip(0, 255).astype(np.uint8)
        return out
    if arr.ndim == 3:  # colour, already RGB (pydicom converts YBR by default)
        if arr.dtype == np.uint8 and options.window is None:
            return arr
        bits = int(ds.get("BitsStored", 8) or 8)
        scaled = arr.astype(np.float64) / max(2**bits - 1, 1)
        colour: np.ndarray = (scaled * 255).clip(0, 255).astype(np.uint8)
        return colour
    unit = _voi(arr, ds, options)
    if photometric == "MONOCHROME1":
        unit = 1.0 - unit
    grey: np.ndarray = (unit * 255.0 + 0.5).clip(0, 255).astype(np.uint8)
    return grey


def apply_viewport(image: Image.Image, viewport: RenderOptions) -> Image.Image:
    if viewport.viewport is None:
        return image
    vw, vh, sx, sy, sw, sh = viewport.viewport
    if sx is not None or sy is not None or sw is not None or sh is not None:
        x0 = sx or 0.0
        y0 = sy or 0.0
        w = sw if sw is not None else image.width - x0
        h = sh if sh is not None else image.height - y0
        box = (min(x0, x0 + w), min(y0, y0 + h), max(x0, x0 + w), max(y0, y0 + h))
        image = image.crop((round(box[0]), round(box[1]), round(box[2]), round(box[3])))
        if w < 0:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if h < 0:
            image = image.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    scale = min(vw / max(image.width, 1), vh / max(image.height, 1))
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR)


def render(ds: Dataset, options: RenderOptions, media_type: str) -> bytes:
    """Render the first frame of ``ds`` (a data set holding one frame) as ``media_type``."""
    try:
        arr = ds.pixel_array
    except Exception as exc:
        raise NotAcceptableError(f"the pixel data cannot be decoded for rendering: {exc}") from exc
    if arr.ndim == 4 or (arr.ndim == 3 and int(ds.get("SamplesPerPixel", 1)) == 1):
        arr = arr[0]
    pixels = to_8bit(arr, ds, options)
    image = Image.fromarray(pixels, mode="RGB" if pixels.ndim == 3 else "L")
    image = apply_viewport(image, options)
    out = io.BytesIO()
    fmt = _FORMATS[media_type]
    if fmt == "JPEG":
        image.save(out, format=fmt, quality=options.quality)
    else:
        image.save(out, format=fmt)
    return out.getvalue()
