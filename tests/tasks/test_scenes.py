"""Composed scenes: masks, boxes and regions of each item, captions that name both items and where."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.errors import WorkbenchError
from workbench.tasks.scenes import CANVAS, SceneSet, caption_for, compose, object_spans, side_spans


def _square(y0, y1, x0, x1, value=1.0):
    item = np.zeros((28, 28), np.float32)
    item[y0:y1, x0:x1] = value
    return item


def test_compose_masks_boxes_regions_hand_computed():
    left, right = _square(2, 10, 3, 7), _square(20, 28, 0, 28, value=0.05)  # right: below the threshold
    right[5, 6] = 0.9  # one bright pixel
    image, masks, regions, boxes = compose(left, right)
    assert image.shape == CANVAS and masks.shape == regions.shape == (2, *CANVAS)
    assert masks[0].sum() == 8 * 4 and masks[0, 2:10, 3:7].all()
    assert boxes[0].tolist() == [3, 2, 7, 10]                  # (x0, y0, x1, y1), exclusive ends
    assert masks[1].sum() == 1 and masks[1, 5, 28 + 6]
    assert boxes[1].tolist() == [34, 5, 35, 6]                 # shifted by the left item's 28 columns
    assert regions[0, :, :28].all() and not regions[0, :, 28:].any() and regions[1, :, 28:].all()
    assert image[5, 34] == pytest.approx(0.9) and image[2, 3] == 1.0


def test_compose_empty_item_gets_its_cell_as_box():
    _, masks, _, boxes = compose(np.zeros((28, 28), np.float32), _square(0, 1, 0, 1))
    assert not masks[0].any() and boxes[0].tolist() == [0, 0, 28, 28]


def test_compose_refuses_wrong_item_shape():
    with pytest.raises(WorkbenchError, match="28×28"):
        compose(np.zeros((14, 14)), np.zeros((28, 28)))


def test_captions_name_both_items_and_sides():
    assert caption_for("sneaker", "bag") == "a sneaker on the left and a bag on the right"
    assert caption_for("sneaker", "bag", right_first=True) == "a bag on the right and a sneaker on the left"
    c = caption_for("shirt", "t-shirt", right_first=True)
    (a0, a1), (b0, b1) = object_spans(c, ("shirt", "t-shirt"))
    assert c[a0:a1] == "shirt" and c[b0:b1] == "t-shirt" and a0 > b0  # not the "shirt" inside "t-shirt"
    (l0, l1), (r0, r1) = side_spans(c)
    assert c[l0:l1] == "left" and c[r0:r1] == "right" and r0 < l0
    with pytest.raises(WorkbenchError, match="caption_for"):
        object_spans("a bag on the left", ("bag", "coat"))
    with pytest.raises(WorkbenchError, match="on the right"):
        side_spans("a bag on the left")


def test_scene_set_batch_matches_its_items():
    rng = np.random.default_rng(0)
    items = rng.random((40, 28, 28)).astype(np.float32)
    labels = np.arange(40) % 4
    scenes = SceneSet(n=12, seed=3, items=(items, labels))
    b = scenes.batch([0, 5, 11])
    assert b.images.shape == (3, 1, *CANVAS) and b.images.min() >= -1 and b.images.max() <= 1
    assert (b.labels[:, 0] != b.labels[:, 1]).all() and set(b.labels.flatten().tolist()) <= {0, 1, 2, 3}
    for k, i in enumerate([0, 5, 11]):
        left, right = scenes.item_ids[i]
        assert labels[left] == b.labels[k, 0] and labels[right] == b.labels[k, 1]
        np.testing.assert_allclose(b.images[k, 0, :, :28].numpy(), items[left] * 2 - 1, atol=1e-6)
        names = scenes.names[b.labels[k, 0]], scenes.names[b.labels[k, 1]]
        assert f"a {names[0]} on the left" in b.captions[k] and f"a {names[1]} on the right" in b.captions[k]
        assert scenes.captions[b.caption_ids[k]] == b.captions[k]
    assert len(scenes.captions) == 180 and scenes.right_first.any() and not scenes.right_first.all()
    same = SceneSet(n=12, seed=3, items=(items, labels))
    assert (same.item_ids == scenes.item_ids).all()
