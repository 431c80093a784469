"""Frame checks and preprocessing: shapes, channel orders, normalization, bad input."""
import numpy as np
import pytest

from gi_sdk.errors import InvalidFrameError
from gi_sdk.preprocessing import FLORENCE_MEAN, FLORENCE_STD, preprocess


@pytest.mark.parametrize("frame,why", [
    (None, "None from a failed capture"),
    (np.zeros((10, 10), np.uint8), "grayscale, rank 2"),
    (np.zeros((10, 10, 1), np.uint8), "single channel"),
    (np.zeros((10, 10, 3), np.float32), "float image"),
    (np.zeros((0, 10, 3), np.uint8), "empty"),
    ([[[0, 0, 0]]], "a list, not an array"),
    (np.zeros((2, 10, 10, 3), np.uint8), "a batch, not a frame"),
])
def test_bad_frames_raise_invalid_frame_error(frame, why):
    with pytest.raises(InvalidFrameError):
        preprocess(frame)


def test_output_shape_dtype_and_normalization():
    # a uniform frame of colour c maps to (c/255 - mean) / std in every pixel
    frame = np.full((120, 160, 3), (10, 128, 250), np.uint8)  # BGR
    x = preprocess(frame, size=(64, 48))
    assert x.shape == (3, 48, 64) and x.dtype == np.float32
    rgb = np.array([250, 128, 10]) / 255.0
    np.testing.assert_allclose(x[:, 10, 10], (rgb - FLORENCE_MEAN) / FLORENCE_STD, rtol=1e-5)


@pytest.mark.parametrize("channels,frame_channels,order", [
    ("bgr", 3, [2, 1, 0]), ("rgb", 3, [0, 1, 2]), ("bgra", 4, [2, 1, 0]), ("rgba", 4, [0, 1, 2]),
])
def test_channel_orders(channels, frame_channels, order):
    frame = np.zeros((16, 16, frame_channels), np.uint8)
    frame[..., :3] = (30, 60, 90)
    x = preprocess(frame, size=(8, 8), channels=channels)
    expected = (np.array([30, 60, 90])[order] / 255.0 - FLORENCE_MEAN) / FLORENCE_STD
    np.testing.assert_allclose(x[:, 0, 0], expected, rtol=1e-5)


def test_out_buffer_is_filled_in_place_and_crop_applies():
    frame = np.zeros((100, 100, 3), np.uint8)
    frame[20:60, 30:70] = 255
    out = np.empty((3, 10, 10), np.float32)
    x = preprocess(frame, size=(10, 10), crop=(30, 20, 40, 40), out=out)
    assert x is out
    white = (1.0 - np.array(FLORENCE_MEAN)) / FLORENCE_STD
    np.testing.assert_allclose(out[:, 5, 5], white, rtol=1e-5)


def test_float16_output():
    x = preprocess(np.zeros((32, 32, 3), np.uint8), size=(16, 16), dtype=np.float16)
    assert x.dtype == np.float16
