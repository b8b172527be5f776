"""Load the user's photo safely: any format Pillow reads, any mode, EXIF orientation, a crop."""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from jobimages.errors import BadInput

# EXIF orientations 5-8 turn the image a quarter, swapping width and height.
_TRANSPOSING_ORIENTATIONS = frozenset({5, 6, 7, 8})
_EXIF_ORIENTATION = 0x0112
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "La", "RGBa"})


@dataclass(frozen=True)
class Crop:
    """A rectangle in the photo as the viewer sees it (after EXIF orientation), in pixels."""

    x: int
    y: int
    width: int
    height: int

    @classmethod
    def parse(cls, text: str) -> Crop:
        """Parse `x,y,w,h`, raising BadInput on anything else."""
        parts = text.split(",")
        try:
            x, y, w, h = (int(p.strip()) for p in parts)
        except ValueError:
            raise BadInput(f"--crop must be four integers x,y,w,h; got {text!r}") from None
        if w <= 0 or h <= 0:
            raise BadInput(f"--crop width and height must be positive; got {text!r}")
        return cls(x, y, w, h)


def load_photo(
    path: Path,
    *,
    aspect: float,
    needed_size: tuple[int, int],
    crop: Crop | None,
    max_pixels: int,
) -> npt.NDArray[np.uint8]:
    """Return the photo as 8-bit RGB or RGBA, cropped to the placement's aspect.

    The result is no bigger than needed_size (the largest the placement ever appears) nor
    than the crop itself, and has an even width and height. JPEGs are decoded at a reduced
    scale when that suffices, which keeps a 50-megapixel photo from costing 200 MB.
    """
    if path.stat().st_size == 0:
        raise BadInput("the photo is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
            return _prepare(image, aspect, needed_size, crop, max_pixels)
    except BadInput:
        raise
    except UnidentifiedImageError as exc:
        raise BadInput(f"the photo is not an image format we can read: {exc}") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadInput(f"the photo is too large to decode safely: {exc}") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Pillow reports truncated and corrupt files through these.
        raise BadInput(f"the photo is damaged or truncated: {exc}") from exc


def _prepare(
    image: Image.Image,
    aspect: float,
    needed_size: tuple[int, int],
    crop: Crop | None,
    max_pixels: int,
) -> npt.NDArray[np.uint8]:
    """Check limits, crop, decode at the least scale that suffices, and normalise the mode."""
    width, height = image.size
    if width * height > max_pixels:
        raise BadInput(
            f"the photo is {width}x{height} = {width * height} pixels, over the limit of "
            f"{max_pixels}"
        )
    orientation = int(image.getexif().get(_EXIF_ORIENTATION, 1) or 1)
    is_turned = orientation in _TRANSPOSING_ORIENTATIONS
    seen_w, seen_h = (height, width) if is_turned else (width, height)
    region = _region(seen_w, seen_h, crop, aspect)
    target = _target_size(region, aspect, needed_size)

    if image.format == "JPEG":
        # Ask the decoder for the smallest DCT scale that still covers the target.
        factor = min(region[2] / target[0], region[3] / target[1])
        request = (math.ceil(width / factor), math.ceil(height / factor))
        image.draft("RGB" if image.mode != "CMYK" else "CMYK", request)
    image.load()
    scale = image.size[0] / width
    image = ImageOps.exif_transpose(image)
    image = _to_8bit(image)
    left, top, w, h = (v * scale for v in region)
    box = (left, top, left + w, top + h)
    resized = image.resize(target, Image.Resampling.LANCZOS, box=box, reducing_gap=3.0)
    pixels = np.asarray(resized, dtype=np.uint8)
    if pixels.shape[2] == 4 and bool(np.all(pixels[:, :, 3] == 255)):
        # Opaque after all: skip the per-frame alpha work.
        pixels = pixels[:, :, :3]
    return np.ascontiguousarray(pixels)


def _region(
    seen_w: int, seen_h: int, crop: Crop | None, aspect: float
) -> tuple[float, float, float, float]:
    """Return the part of the photo to use: the crop, centre-cropped to the aspect."""
    if crop is None:
        x, y, w, h = 0, 0, seen_w, seen_h
    else:
        if (
            crop.x < 0
            or crop.y < 0
            or crop.x + crop.width > seen_w
            or crop.y + crop.height > seen_h
        ):
            raise BadInput(
                f"--crop {crop.x},{crop.y},{crop.width},{crop.height} lies outside the "
                f"{seen_w}x{seen_h} photo"
            )
        x, y, w, h = crop.x, crop.y, crop.width, crop.height
    if w / h > aspect:
        new_w = h * aspect
        return (x + (w - new_w) / 2, float(y), new_w, float(h))
    new_h = w / aspect
    return (float(x), y + (h - new_h) / 2, float(w), new_h)


def _target_size(
    region: tuple[float, float, float, float], aspect: float, needed_size: tuple[int, int]
) -> tuple[int, int]:
    """Pick the even pixel size to resample to: enough for the largest placement, no more."""
    need_h = max(needed_size[1], needed_size[0] / aspect)
    height = min(region[3], need_h)
    width = height * aspect
    even_w = max(2, 2 * round(width / 2))
    even_h = max(2, 2 * round(height / 2))
    return even_w, even_h


def _to_8bit(image: Image.Image) -> Image.Image:
    """Return an 8-bit RGB or RGBA image in sRGB, whatever mode and profile came in."""
    image = _to_srgb(image)
    mode = image.mode
    if mode in ("RGB", "RGBA"):
        return image
    if mode.startswith("I") or mode == "F":
        values = np.asarray(image).astype(np.float64)
        # 16- and 32-bit integer greys span 0-65535; float greys are usually 0-1.
        top = 1.0 if mode == "F" and values.size and float(values.max()) <= 1.0 else 255.0
        if mode != "F":
            top = 65535.0 if values.size and float(values.max()) > 255 else 255.0
        grey = np.clip(np.rint(values * (255.0 / top)), 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    has_alpha = mode in _ALPHA_MODES or "transparency" in image.info
    try:
        return image.convert("RGBA" if has_alpha else "RGB")
    except ValueError as exc:
        raise BadInput(f"the photo's colour mode {mode} is not supported") from exc


def _to_srgb(image: Image.Image) -> Image.Image:
    """Apply an embedded ICC profile so wide-gamut and CMYK photos keep their colours."""
    icc = image.info.get("icc_profile")
    if not icc or image.mode not in ("RGB", "RGBA", "CMYK"):
        return image
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        target = ImageCms.createProfile("sRGB")
        out_mode = "RGBA" if image.mode == "RGBA" else "RGB"
        converted = ImageCms.profileToProfile(image, source, target, outputMode=out_mode)
    except (ImageCms.PyCMSError, OSError, ValueError):
        # A broken profile is common and harmless: fall back to the naive conversion.
        return image
    return converted if converted is not None else image
