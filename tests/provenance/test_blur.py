"""Redaction: the face detector no longer finds the blurred faces; the rest is untouched."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.provenance import blur_regions


def _faces(rgb: np.ndarray) -> list[tuple[int, int, int, int]]:
    import dlib

    rects, scores, _ = dlib.get_frontal_face_detector().run(np.ascontiguousarray(rgb), 1, 0.0)
    return [(r.left(), r.top(), r.right(), r.bottom()) for r, s in zip(rects, scores, strict=True) if s > 0.5]


@pytest.mark.parametrize("name", ["astronaut", "grace_hopper"])
def test_blurred_faces_are_no_longer_detected(name: str, request: pytest.FixtureRequest) -> None:
    image = request.getfixturevalue(name)
    boxes = _faces(image)
    assert boxes, "the detector should find the real face first"
    out = blur_regions(image, boxes)
    assert _faces(out) == []
    x0, y0, x1, y1 = boxes[0]
    def detail(region: np.ndarray) -> float:
        return float(np.abs(np.diff(region.astype(np.float64), axis=1)).mean())

    assert detail(out[y0:y1, x0:x1]) < 0.5 * detail(image[y0:y1, x0:x1])
    mask = np.ones(image.shape[:2], bool)
    for bx0, by0, bx1, by1 in boxes:
        w, h = bx1 - bx0, by1 - by0
        mask[max(0, by0 - h // 4):by1 + h // 4, max(0, bx0 - w // 4):bx1 + w // 4] = False
    assert np.array_equal(out[mask], image[mask])


def test_boxes_outside_or_empty_are_harmless(coffee: np.ndarray) -> None:
    out = blur_regions(coffee, [(-50, -50, 20, 20), (10_000, 10_000, 10_100, 10_100), (5, 5, 5, 5)])
    assert out.shape == coffee.shape
    assert not np.array_equal(out[:20, :20], coffee[:20, :20])
    assert np.array_equal(out[40:, 40:], coffee[40:, 40:])
    assert np.array_equal(blur_regions(coffee, []), coffee)
    with pytest.raises(ValueError):
        blur_regions(coffee.astype(np.float32), [])
