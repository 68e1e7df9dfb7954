"""The one image preprocessing path: any image source -> upright RGB -> square uint8 -> normalized CHW float32.

`load_rgb` turns any image into upright 8-bit RGB; a `Preprocessing` (one per model, from
`models.preprocessing(model, size)`) crops/resizes and scales it. Training, evaluation, export checks and
the demo all call these, so the demo's predictions match the measured test accuracy. Two halves, so that
the expensive one (decode + resize, `load_array`) can be cached on disk by training.
"""
from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# ImageNet statistics (also what Paddle's pretrained vision models expect), RGB order.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
# Decompression-bomb guard: refuse images above this many pixels (about 8000 x 5000).
MAX_PIXELS = 40_000_000


class ImageError(ValueError):
    """An input that is not a usable image; the message is one line meant for people."""


def _open(src) -> tuple[Image.Image, str]:
    name = os.path.basename(str(src)) if isinstance(src, (str, os.PathLike)) else "upload"
    if isinstance(src, Image.Image):
        return src, name
    try:
        return Image.open(io.BytesIO(src) if isinstance(src, (bytes, bytearray)) else src), name
    except Image.DecompressionBombError:  # PIL's own guard, hit before MAX_PIXELS is checked
        raise ImageError(f"{name}: image is above the {MAX_PIXELS:,} pixel limit (decompression-bomb guard)") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ImageError(f"{name}: not a readable image ({type(e).__name__})") from None


def load_rgb(src, max_pixels: int = MAX_PIXELS, _draft: int | None = None) -> Image.Image:
    """Open a path, bytes, file object or PIL image and return it upright (EXIF) in 8-bit RGB.

    Handles grayscale, palette (with transparency), RGBA/LA (composited on white), CMYK,
    16-bit and 32-bit integer/float images, and multi-frame files (first frame).
    Raises ImageError with a one-line reason for anything that cannot be read.
    """
    img, name = _open(src)
    w, h = img.size
    if w * h > max_pixels:
        raise ImageError(f"{name}: image is {w}x{h} pixels, above the {max_pixels:,} pixel limit")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL's palette-transparency and EXIF warnings
            if _draft and img.format == "JPEG" and img.mode in ("RGB", "L", "CMYK"):
                img.draft(img.mode, (_draft, _draft))  # DCT-domain downscale: much faster decode
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)
            img = ImageOps.exif_transpose(img)
            return _to_rgb(img)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        first = str(e).splitlines()[0] if str(e) else "truncated or corrupt"
        raise ImageError(f"{name}: not a readable image ({type(e).__name__}: {first})") from None


def _to_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if mode.startswith("I;16") else max(float(a.max()), 1.0)
        a = np.clip(a / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(a, "L").convert("RGB")
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        img = img.convert("RGBA")
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, img).convert("RGB")
    if mode != "RGB":
        return img.convert("RGB")
    img.load()
    return img


@dataclass(frozen=True)
class Preprocessing:
    """How one model wants its images: the one definition training, export, the parity proof and serving use.

    resize "squash": the whole image resized to size x size (aspect ratio not kept; smallcnn's, trained so).
    resize "center_crop": the central square of `crop` x the short side, resized to size x size (the
    ImageNet evaluation crop: 224/256 = 0.875; EfficientNet's TF code crops the same way).
    Then (x / 255 - mean) / std per RGB channel. `load_array` is the expensive, cacheable half:

        spec(src) == spec.normalize(spec.load_array(src)[None])[0]
    """
    size: int
    resize: str = "squash"
    crop: float = 1.0
    interpolation: str = "bilinear"
    mean: tuple = MEAN
    std: tuple = STD

    def __post_init__(self):
        if self.resize not in ("squash", "center_crop") or self.interpolation not in _FILTERS:
            raise ValueError(f"unknown preprocessing {self.resize}/{self.interpolation}")
        if not 0 < self.crop <= 1 or self.size < 1:
            raise ValueError(f"preprocessing needs size >= 1 and 0 < crop <= 1 (got {self.size}, {self.crop})")

    def load_array(self, src) -> np.ndarray:
        """Decode `src` (path, bytes, file, PIL image) to a size x size uint8 HWC RGB array.
        JPEGs are decoded at >= 2x the target size (DCT scaling, much faster), then resized."""
        rgb = load_rgb(src, _draft=2 * self.size)
        box = None
        if self.resize == "center_crop":
            w, h = rgb.size
            c = self.crop * min(w, h)
            box = ((w - c) / 2, (h - c) / 2, (w + c) / 2, (h + c) / 2)
        return np.asarray(rgb.resize((self.size, self.size), _FILTERS[self.interpolation], box=box), dtype=np.uint8)

    def normalize(self, batch: np.ndarray) -> np.ndarray:
        """uint8 NHWC RGB -> float32 NCHW: (x / 255 - mean) / std."""
        x = batch.astype(np.float32).transpose(0, 3, 1, 2)
        x *= 1.0 / 255.0
        x -= np.asarray(self.mean, np.float32)[:, None, None]
        x /= np.asarray(self.std, np.float32)[:, None, None]
        return x

    def __call__(self, src) -> np.ndarray:
        """Any image source -> normalized CHW float32 of shape (3, size, size)."""
        return self.normalize(self.load_array(src)[None])[0]

    def as_dict(self) -> dict:
        return {"size": self.size, "resize": self.resize, "crop": self.crop, "interpolation": self.interpolation,
                "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocessing":
        """The inverse of as_dict; ValueError (one line) for anything else."""
        try:
            return cls(int(d["size"]), str(d["resize"]), float(d["crop"]), str(d["interpolation"]),
                       tuple(float(v) for v in d["mean"]), tuple(float(v) for v in d["std"]))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"not a preprocessing description ({type(e).__name__}: {e})") from None


_FILTERS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}
