"""The one preprocessing path: every kind of image becomes upright 8-bit RGB; bad files get one-line errors."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from models import MEAN, STD, ImageError, load_array, load_rgb, normalize, preprocess
from models.preprocess import MAX_PIXELS


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def left_red_right_blue(w=40, h=20) -> Image.Image:
    a = np.zeros((h, w, 3), np.uint8)
    a[:, : w // 2] = (255, 0, 0)
    a[:, w // 2:] = (0, 0, 255)
    return Image.fromarray(a)


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA", "CMYK", "I;16", "I", "F", "1"])
def test_every_mode_becomes_rgb(mode):
    img = left_red_right_blue().convert("L").convert(mode) if mode in ("I;16", "I", "F") else left_red_right_blue().convert(mode)
    out = load_rgb(encode(img, "TIFF" if mode in ("I;16", "I", "F", "CMYK") else "PNG"))
    assert out.mode == "RGB" and out.size == (40, 20)


def test_sixteen_bit_keeps_its_range():
    a = (np.linspace(0, 65535, 64 * 8).reshape(8, 64)).astype(np.uint16)
    out = np.asarray(load_rgb(Image.fromarray(a, "I;16")))
    assert out[..., 0].min() == 0 and out[..., 0].max() == 255  # not clipped to white


def test_transparent_pixels_are_white():
    a = np.zeros((4, 4, 4), np.uint8)  # fully transparent black
    assert np.asarray(load_rgb(encode(Image.fromarray(a, "RGBA"), "PNG"))).min() == 255


def test_exif_rotation_is_applied():
    img = left_red_right_blue()
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view": stored sideways
    out = np.asarray(load_rgb(encode(img, "JPEG", exif=exif, quality=95)))
    assert out.shape == (40, 20, 3)  # upright: height and width swapped
    top, bottom = out[:5].mean(axis=(0, 1)), out[-5:].mean(axis=(0, 1))
    assert top[0] > 200 and bottom[2] > 200  # left (red) went to the top


def test_gif_first_frame():
    frames = [Image.new("P", (8, 8), i) for i in (1, 2)]
    data = io.BytesIO()
    frames[0].save(data, format="GIF", save_all=True, append_images=frames[1:])
    assert load_rgb(data.getvalue()).size == (8, 8)


@pytest.mark.parametrize("data, words", [
    (b"this is not an image", "not a readable image"),
    (encode(left_red_right_blue(400, 300), "JPEG")[:500], "not a readable image"),
])
def test_bad_files_raise_one_line(data, words):
    with pytest.raises(ImageError) as e:
        load_array(data, 32)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_decompression_bomb_is_refused_before_decoding():
    side = int(MAX_PIXELS ** 0.5) + 10
    big = encode(Image.new("L", (side, side)), "PNG")  # compresses to almost nothing
    with pytest.raises(ImageError, match="pixel limit"):
        load_rgb(big)


def test_missing_file_is_an_image_error(tmp_path):
    with pytest.raises(ImageError, match="nope.jpg"):
        load_array(str(tmp_path / "nope.jpg"), 32)


def test_preprocess_is_load_array_then_normalize(tmp_path):
    p = tmp_path / "x.jpg"
    left_red_right_blue(300, 250).save(p, quality=90)
    x = preprocess(str(p), 64)
    assert x.shape == (3, 64, 64) and x.dtype == np.float32
    assert np.array_equal(x, normalize(load_array(str(p), 64)[None])[0])
    red = (255 / 255 - MEAN[0]) / STD[0]
    assert abs(x[0, 32, 2] - red) < 0.1  # left edge red, channel order RGB
