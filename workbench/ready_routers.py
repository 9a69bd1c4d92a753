"""The ready routers shipped in ``routers/``: rank-wise experts and an adapter mixture on SmolLM2.

    lab = Workbench.from_zoo("smollm2-135m")
    ready.load_all(lab)                     # MeteoRA's bank: the four ready adapters
    ready_routers.load_all(lab)             # adds smora, flylora, meteora and the plain lora_r26

Each rank-wise router and the plain LoRA baseline is trained on the same mix of three tasks with the
same trainable-parameter budget per layer (98,304 on SmolLM2's attention); MeteoRA trains only its
gates over the frozen ready adapters. ``scripts/train_ready_routers.py`` rebuilds them
(``make routers``).
"""

from __future__ import annotations

from pathlib import Path

from workbench import ready
from workbench.errors import WorkbenchError

TASKS = ["arithmetic", "topic", "language"]  # the mix the rank-wise routers and the baseline learn
TRAIN = {"steps": 100, "lr": 1e-3, "batch_size": 8, "seed": 0}
# name -> (kind, build arguments, training arguments)
RECIPES: dict[str, tuple[str, dict, dict]] = {
    # plain LoRA with the rank-wise routers' budget: r·(Σin + Σout) = 26·3840 ≈ 98,304 per layer
    "lora_r26": ("adapter", {"r": 26, "alpha": 52, "targets": "attention"}, {**TRAIN, "tasks": TASKS}),
    # SMoRA: 16 rank experts, 4 active (s = α/k = 2); A, B and the router: 16·3840 + 16·2304 per layer
    "smora": ("router", {"mechanism": "smora", "r": 16, "k": 4, "alpha": 8, "targets": "attention"},
              {**TRAIN, "tasks": TASKS}),
    # FlyLoRA: frozen sparse A, 64 ranks, 16 active (s = α/r = 2); trainable B: 64·Σout per layer
    "flylora": ("router", {"mechanism": "flylora", "r": 64, "k": 16, "alpha": 128, "targets": "attention",
                           "update": "train_only"},  # evaluation must not move the bias of a shipped router
                {**TRAIN, "tasks": TASKS}),
    # MeteoRA: gates over the four frozen ready adapters, top-2, trained with the gate loss on all four
    "meteora": ("router", {"mechanism": "meteora", "bank": list(ready.NAMES), "k": 2},
                {**TRAIN, "steps": 60, "lr": 5e-3, "tasks": list(ready.NAMES)}),
}
NAMES = list(RECIPES)


def root() -> Path:
    """The ``routers/`` folder of the repository."""
    return Path(__file__).resolve().parent.parent / "routers"


def path(name: str) -> Path:
    if name not in RECIPES:
        raise WorkbenchError(f"no ready router {name!r}; the ready routers are {NAMES}")
    p = root() / name
    if not p.exists():
        raise WorkbenchError(f"ready router {name!r} is missing at {p}; rebuild it with `make routers`")
    return p


def load(lab, name: str):
    """Load one ready router (or the baseline adapter) into ``lab``."""
    kind, build, _ = RECIPES[name]
    if kind == "adapter":
        return lab.load_adapter(path(name), name=name)
    missing = [n for n in build.get("bank", ()) if n not in lab.adapters]  # a bank router's adapters
    if missing:
        ready.load_all(lab, missing)
    return lab.load_router(path(name), name=name)


def load_all(lab, names: list[str] | None = None) -> list:
    return [load(lab, n) for n in (names or NAMES)]
