"""Result: shapes validated, empty is real arrays, filtering keeps instances aligned."""
import numpy as np
import pytest

from gi_sdk.result import Result


def _two():
    return Result(task="detect", boxes=[[0, 0, 10, 10], [5, 5, 20, 30]], labels=["polyp", "instrument"],
                  points=[[5, 5], [12.5, 17.5]], count=2, image_size=(64, 48))


def test_empty_result_has_real_empty_arrays():
    r = Result.empty("detect", (640, 480))
    assert len(r) == 0
    assert r.boxes.shape == (0, 4) and r.boxes.dtype == np.float32
    assert r.points.shape == (0, 2) and r.labels == [] and r.polygons == []
    assert r.masks().shape == (0, 480, 640)


def test_boolean_filtering_keeps_fields_aligned():
    r = _two()
    polyps = r[r.labels_array == "polyp"]
    assert len(polyps) == 1 and polyps.labels == ["polyp"] and polyps.count == 1
    np.testing.assert_array_equal(polyps.boxes, [[0, 0, 10, 10]])


@pytest.mark.parametrize("kwargs", [
    dict(boxes=[[0, 0, 1, 1]], labels=[], points=[[0, 0]]),              # label missing
    dict(boxes=[[0, 0, 1, 1]], labels=["a"], points=[]),                 # point missing
    dict(boxes=[[0, 0, 1, 1]], labels=["a"], points=[[0, 0]], polygons=[[], []]),  # extra polygon
])
def test_misaligned_instances_are_refused(kwargs):
    with pytest.raises(ValueError):
        Result(task="detect", **kwargs)


def test_masks_rasterize_polygons_at_frame_size():
    square = np.array([[10.5, 10.5], [30.5, 10.5], [30.5, 20.5], [10.5, 20.5]], np.float32)
    r = Result(task="segment", boxes=[[10.5, 10.5, 30.5, 20.5]], labels=["polyp"], points=[[20, 15]],
               polygons=[[square]], image_size=(64, 48))
    m = r.masks()
    assert m.shape == (1, 48, 64)
    assert m[0, 15, 20] and not m[0, 5, 5]
    assert m[0].sum() == 21 * 11  # inclusive pixel rows/columns 10..30 x 10..20


def test_to_dict_is_json_serializable():
    import json

    json.dumps(_two().to_dict())
