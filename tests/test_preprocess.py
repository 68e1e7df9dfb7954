"""The one preprocessing path: every kind of image becomes upright 8-bit RGB; bad files get one-line errors."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from models import MEAN, STD, ImageError, Preprocessing, load_rgb, preprocessing
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
    grey = np.asarray(left_red_right_blue().convert("L"))
    wide = {"I;16": (grey.astype(np.uint16) * 257, "I;16"), "I": (grey.astype(np.int32) * 65793, "I"),
            "F": (grey.astype(np.float32) / 255, "F")}  # each mode's own full range
    img = Image.fromarray(*wide[mode]) if mode in wide else left_red_right_blue().convert(mode)
    out = load_rgb(encode(img, "TIFF" if mode in ("I;16", "I", "F", "CMYK") else "PNG"))
    assert out.mode == "RGB" and out.size == (40, 20)
    # the picture survives, not only its size: the left half differs from the right half as in the original
    a = np.asarray(out, dtype=float)
    left, right = a[:, :20].mean(axis=(0, 1)), a[:, 20:].mean(axis=(0, 1))
    if mode in ("P", "RGBA", "CMYK"):  # colour kept: red on the left, blue on the right
        assert left[0] > 200 > left[2] and right[2] > 200 > right[0], (left, right)
    else:  # grey (or black and white): red and blue have different brightness, so the halves differ
        assert abs(left - right).max() > 10, (left, right)


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
    frames = [Image.new("RGB", (8, 8), colour).convert("P") for colour in ((255, 0, 0), (0, 0, 255))]  # red, then blue
    data = io.BytesIO()
    frames[0].save(data, format="GIF", save_all=True, append_images=frames[1:])
    out = np.asarray(load_rgb(data.getvalue()))
    assert out.shape == (8, 8, 3) and (out[..., 0] > 200).all() and (out[..., 2] < 50).all()  # the first frame: red


@pytest.mark.parametrize("data, words", [
    (b"this is not an image", "not a readable image"),
    (encode(left_red_right_blue(400, 300), "JPEG")[:500], "not a readable image"),
])
def test_bad_files_raise_one_line(data, words):
    with pytest.raises(ImageError) as e:
        Preprocessing(32).load_array(data)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_decompression_bomb_is_refused_before_decoding():
    side = int(MAX_PIXELS ** 0.5) + 10
    big = encode(Image.new("L", (side, side)), "PNG")  # compresses to almost nothing
    with pytest.raises(ImageError, match="pixel limit"):
        load_rgb(big)


def test_missing_file_is_an_image_error(tmp_path):
    with pytest.raises(ImageError, match="nope.jpg"):
        Preprocessing(32).load_array(str(tmp_path / "nope.jpg"))


def test_preprocess_is_load_array_then_normalize(tmp_path):
    p = tmp_path / "x.jpg"
    left_red_right_blue(300, 250).save(p, quality=90)
    spec = Preprocessing(64)
    x = spec(str(p))
    assert x.shape == (3, 64, 64) and x.dtype == np.float32
    assert np.array_equal(x, spec.normalize(spec.load_array(str(p))[None])[0])
    red = (255 / 255 - MEAN[0]) / STD[0]
    assert abs(x[0, 32, 2] - red) < 0.1  # left edge red, channel order RGB


def test_center_crop_keeps_the_middle_of_the_short_side():
    a = np.zeros((100, 200, 3), np.uint8)  # wide: left quarter red, middle green, right quarter blue
    a[:, :50], a[:, 50:150], a[:, 150:] = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    out = Preprocessing(16, "center_crop", 0.875, "bilinear").load_array(Image.fromarray(a))
    assert out.shape == (16, 16, 3) and (out[..., 1] > 250).all()  # only the green middle survives
    squashed = Preprocessing(16).load_array(Image.fromarray(a))
    assert squashed[0, 0, 0] > 250 and squashed[0, -1, 2] > 250  # squash keeps both edges


def test_efficientnet_scaling_is_tf_style():
    spec = preprocessing("efficientnet_lite0")
    assert (spec.size, spec.resize, spec.crop, spec.interpolation) == (320, "center_crop", 0.875, "bicubic")
    x = spec.normalize(np.array([[[[0, 127, 255]]]], np.uint8))
    assert np.allclose(x.ravel(), [(0 - 127.5) / 128, (127 - 127.5) / 128, (255 - 127.5) / 128], atol=1e-6)


def test_preprocessing_round_trips_through_its_dict():
    for name in ("efficientnet_lite0", "smallcnn"):
        spec = preprocessing(name, 96)
        assert Preprocessing.from_dict(spec.as_dict()) == spec
    with pytest.raises(ValueError, match="not a preprocessing"):
        Preprocessing.from_dict({"size": 3})
