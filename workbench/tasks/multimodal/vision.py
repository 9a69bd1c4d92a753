"""Vision-language tasks on real images: naming single items, and counting, pointing and "which"
questions on scenes composed of several real items (Point-Detect-Count-style instructions).

Scenes are ``SCENE`` × ``SCENE`` pixel canvases cut into a 3 × 3 grid of ``CELL``-pixel cells; each
occupied cell holds one real item (resized to ``ITEM`` px, shifted by a seeded jitter). The true
point of an item is its centre in canvas pixels. Train and eval scenes draw their items from
disjoint pools of the source's images, so eval items were never seen in training.

Registered tasks (``workbench.tasks.multimodal.load``): ``fashion-naming``, ``digits-naming``,
``mnist-naming`` (label_accuracy); ``fashion-count`` / ``mnist-count`` (count_mae); ``fashion-point`` /
``mnist-point`` (point_match); ``fashion-which`` / ``mnist-which`` (label_accuracy).

Reference: "Point, Detect, Count" (arXiv 2505.16647) for the instruction formats; the scenes are
this project's synthetic stand-in for its medical images.
"""

from __future__ import annotations

import random

import numpy as np

from workbench.tasks.base import SPLIT_BOUNDS, SPLIT_DOCS
from workbench.tasks.multimodal import metrics  # noqa: F401  (registers the multimodal metrics)
from workbench.tasks.multimodal.base import MM_TASKS, MultimodalExample, MultimodalTask
from workbench.tasks.multimodal.images import SOURCES, resize

SCENE, GRID, ITEM, MAX_ITEMS = 96, 3, 26, 4
CELL = SCENE // GRID
POSITIONS = ("top left", "top", "top right", "left", "center", "right", "bottom left", "bottom",
             "bottom right")
SYSTEM = "You look at an image and answer briefly."


def _pools(source: str, seed: int, n_pool: int = 400):
    """(train pool, eval pool) of image indices, disjoint, balanced enough by random sampling."""
    images, labels, names = SOURCES.get(source)()
    order = list(range(len(images)))
    random.Random(f"{source}:pools:{seed}").shuffle(order)
    return images, labels, names, order[n_pool:2 * n_pool + 2000], order[:n_pool]


def compose(items: list[tuple[np.ndarray, int]], rng: random.Random) -> tuple[np.ndarray, list]:
    """A scene with each (image, cell) placed in its cell; returns (canvas (SCENE, SCENE), centres)."""
    canvas = np.zeros((SCENE, SCENE), dtype=np.float32)
    centres = []
    slack = CELL - ITEM
    for image, cell in items:
        r, c = divmod(cell, GRID)
        y, x = r * CELL + rng.randint(0, slack), c * CELL + rng.randint(0, slack)
        box = (slice(y, y + ITEM), slice(x, x + ITEM))
        canvas[box] = np.maximum(canvas[box], resize(image, ITEM))
        centres.append((x + ITEM / 2, y + ITEM / 2))
    return canvas, centres


def _scene(images, labels, pool, rng: random.Random):
    """Random items (1..MAX_ITEMS) in distinct cells: (canvas, [(label, cell, centre)])."""
    n = rng.randint(1, MAX_ITEMS)
    return _place(images, labels, [rng.choice(pool) for _ in range(n)], rng)


def _scene_with(images, labels, by_label: dict, rng: random.Random, asked: int, count: int):
    """A scene of 1..MAX_ITEMS items holding exactly ``count`` of class ``asked``.

    ``by_label``: class -> the pool's image indices of that class.
    """
    n = rng.randint(max(count, 1), MAX_ITEMS)
    other = [c for c in by_label if c != asked]
    picks = [rng.choice(by_label[asked]) for _ in range(count)] + \
            [rng.choice(by_label[rng.choice(other)]) for _ in range(n - count)]
    rng.shuffle(picks)
    return _place(images, labels, picks, rng)


def _place(images, labels, picks, rng: random.Random):
    """The picked images in distinct random cells: (canvas, [(label, cell, centre)])."""
    cells = rng.sample(range(GRID * GRID), len(picks))
    canvas, centres = compose([(images[i], cell) for i, cell in zip(picks, cells, strict=True)], rng)
    return canvas, [(int(labels[i]), cell, c) for i, cell, c in zip(picks, cells, centres, strict=True)]


def _format_points(points) -> str:
    points = sorted(points, key=lambda p: (p[1], p[0]))
    return " ".join(f"({round(x)}, {round(y)})" for x, y in points) if points else "none"


def naming(source: str, seed: int = 0, n_train: int = 300, n_eval: int = 60) -> MultimodalTask:
    """"What is this?" on one real item filling the canvas; the answer is its class name."""
    images, labels, names, train_pool, eval_pool = _pools(source, seed)
    question = "What is this? Answer with its name."

    def make(pool, n, tag):
        rng = random.Random(f"{source}:naming:{tag}:{seed}")
        out = []
        for i in rng.sample(pool, n):
            name = names[labels[i]]
            out.append(MultimodalExample(question, name, image=resize(images[i], SCENE), answer=name,
                                         meta={"source": source, "index": int(i)}))
        return out

    return MultimodalTask(name=f"{source.split('-')[0]}-naming",
                          description=f"name one real {source} image ({len(names)} classes)",
                          metric="label_accuracy", train=make(train_pool, n_train, "train"),
                          eval=make(eval_pool, n_eval, "eval"), system=SYSTEM, max_new_tokens=6,
                          max_length=96, modality="image", labels=tuple(names))


def scene_task(source: str, kind: str, seed: int = 0, n_train: int = 300, n_eval: int = 60) -> MultimodalTask:
    """Counting (``kind="count"``), pointing (``"point"``) or "which" questions on composed scenes."""
    images, labels, names, train_pool, eval_pool = _pools(source, seed)
    classes = list(range(len(names)))

    def make(pool, n, tag):
        rng = random.Random(f"{source}:{kind}:{tag}:{seed}")
        by_label = {c: [i for i in pool if labels[i] == c] for c in classes} if kind != "which" else {}
        out = []
        for _ in range(n):
            if kind == "which":
                canvas, items = _scene(images, labels, pool, rng)
                label, cell, _ = rng.choice(items)
                prompt, answer = f"What is at the {POSITIONS[cell]}? Answer with its name.", names[label]
                target = answer
            else:  # the asked class appears 0..MAX_ITEMS times, uniformly: no answer is right by default
                asked = rng.choice(classes)
                canvas, items = _scene_with(images, labels, by_label, rng, asked, rng.randint(0, MAX_ITEMS))
                where = [c for lab, _, c in items if lab == asked]
                if kind == "count":
                    prompt = f"How many {names[asked]} items are there? Answer with a number."
                    answer = len(where)
                    target = str(answer)
                else:
                    prompt = f"Point to each {names[asked]} as (x, y) pixels, or say none."
                    answer = [(round(x), round(y)) for x, y in where]
                    target = _format_points(answer)
            out.append(MultimodalExample(prompt, target, image=canvas, answer=answer,
                                         meta={"source": source, "items": len(items)}))
        return out

    metric = {"count": "count_mae", "point": "point_match", "which": "label_accuracy"}[kind]
    return MultimodalTask(name=f"{source.split('-')[0]}-{kind}",
                          description=f"{kind} questions on {SCENE}px scenes of 1-{MAX_ITEMS} real {source}"
                                      " items",
                          metric=metric, train=make(train_pool, n_train, "train"),
                          eval=make(eval_pool, n_eval, "eval"), system=SYSTEM,
                          max_new_tokens=24 if kind == "point" else 6, max_length=128, modality="image",
                          labels=tuple(names))


QUESTIONS = {"naming": "Name the single real {source} item in the image",
             "count": "How many items of one class are in a scene of real {source} items (count MAE)",
             "point": "Point to every item of one class in a scene of real {source} items (point matching)",
             "which": "Which real {source} item is at a named cell of a scene"}


def _builder(source: str, kind: str):
    """The registered builder of one (source, kind): a function of the split only, with its own docstring."""
    def build(seed: int = 0, n_train: int = 300, n_eval: int = 60) -> MultimodalTask:
        if kind == "naming":
            return naming(source, seed, n_train, n_eval)
        return scene_task(source, kind, seed, n_train, n_eval)

    build.__doc__ = QUESTIONS[kind].format(source=source) + "."
    return build


def _register_all() -> None:
    pairs = [(s, "naming") for s in ("fashion-mnist", "digits", "mnist-5k")]
    pairs += [(s, k) for s in ("fashion-mnist", "mnist-5k") for k in ("count", "point", "which")]
    for source, kind in pairs:
        MM_TASKS.register(f"{source.split('-')[0]}-{kind}", bounds=SPLIT_BOUNDS, docs=SPLIT_DOCS)(
            _builder(source, kind))


_register_all()
