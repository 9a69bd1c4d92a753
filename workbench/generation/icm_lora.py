"""ICMLoRA: a conditional VAE that makes LoRA weights for a task from a handful of its examples.

    gen = ICMLoRA(lab)                                    # the lab whose base the adapters are for
    gen.fit({"arith": run_a.checkpoints, "topic": run_t.checkpoints},   # the training lab's checkpoints
            {"arith": tasks["arithmetic"], "topic": tasks["topic"]})    # examples -> each task's condition
    new = gen.generate(tasks["arithmetic"].train[:8], seed=0)          # an Adapter (not yet in the lab)
    lab.evaluate([new, "arith", None], tasks["arithmetic"])            # like any other adapter
    lab.save_adapter(new, "out/generated")                             # PEFT, lineage inside
    again = gen.reconstruct(lab.adapters["arith"])                     # dec(μ(x, c), c): how well it fits

What a condition is: ``task_vector`` (the last decoder layer's hidden state at the last position,
averaged over the examples, on the base model), less the mean of the fitted tasks' task vectors and
divided by one scalar, the root mean square of those centred vectors: what the tasks share (the
end-of-turn token's own state dominates a last-position state) is removed and the network sees
values of order one whatever the model's scale.
A tensor (H,) may be given instead of examples wherever examples are asked for.

What a generated adapter is: ``z ~ N(0, I)`` (a seeded generator per call), ``x̂ = dec(z, c)`` cropped to
the layout's length, each tensor de-normalized with the per-tensor ``(mean, std)`` of the last
checkpoint of the fitted task whose condition is nearest (cosine) to ``c`` (or ``stats_from=``), in
the checkpoints' layout (modules, ranks, alphas, scaling, base). Its lineage names the generator, its
configuration, the condition (layer, position, examples, a digest and the nearest task), the seed and
the sample index.

Reference: Shao et al., "In-Context Meta LoRA Generation" (ICM-LoRA), IJCAI 2025, arXiv 2501.17635;
authors' code ``utils/ReconstructLora_cvae.py`` (``z = randn(3, latent)``, ``model.decode(z, c)``, the
first sample used, ``sample[:input_length]``, de-normalized with the task's last checkpoint's stats).
Deviations: the condition is centred on the fitted tasks' mean and scaled by their RMS (the authors
feed raw hidden states); de-normalization stats are chosen by the nearest condition, by the cosine
of centred conditions (the authors name the task's
file), so a new task needs no name; defaults are scaled to the adapters here (channels = the
authors' / 4, latent 32, as merging.md §4's check proposes); see ``task_vector``, ``flatten``,
``data`` and ``fitting`` for theirs.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
import torch

from workbench.adapters import Adapter
from workbench.errors import WorkbenchError
from workbench.generation.cvae import CVAE1D
from workbench.generation.data import CheckpointSet
from workbench.generation.fitting import fit_cvae
from workbench.generation.flatten import Layout, flatten, unflatten
from workbench.generation.task_vector import encode_examples, last_decoder_layer, task_vector

SCALED_CHANNELS = (2, 4, 8, 16, 32, 64, 64, 32, 16, 8, 4, 2)  # the authors' channels / 4


class ICMLoRA:
    """The ICM-LoRA generator of a lab: fit on checkpoints, then ``generate`` and ``reconstruct``.

    Args:
        lab: the Workbench whose base the checkpoints and the generated adapters belong to.
        channels, latent, kernel, kl_weight, slice_length: the ``CVAE1D``'s (see there).
        layer: the module path the task vector is read at (default: the last decoder layer).
    """

    name = "icm_lora"

    def __init__(self, lab, *, channels: Sequence[int] = SCALED_CHANNELS, latent: int = 32, kernel: int = 7,
                 kl_weight: float = 0.005, slice_length: int | None = None, layer: str | None = None):
        self.lab = lab
        self.options = {"channels": list(channels), "latent": int(latent), "kernel": int(kernel),
                        "kl_weight": float(kl_weight), "slice_length": slice_length}
        self.layer = layer or last_decoder_layer(lab.model)
        self.vae: CVAE1D | None = None
        self.data: CheckpointSet | None = None  # the training set (None for a loaded generator)
        self.tasks: list[str] = []  # the fitted tasks, in order
        self.layout: Layout | None = None  # the layout of every adapter it reads and makes
        self.stats: dict[str, torch.Tensor] = {}  # task -> (K, 2) its last checkpoint's (mean, std)
        self.conditions: torch.Tensor | None = None  # (T, H) raw task vectors of the fitted tasks
        self.scale = 1.0
        self.history: pd.DataFrame | None = None
        self.fit_options: dict = {}

    def __repr__(self) -> str:
        state = f"tasks={self.tasks}, L={self.layout.length}" if self.vae is not None else "not fitted"
        return f"ICMLoRA({self.lab.name!r}, {state})"

    # -- conditions ------------------------------------------------------------------------------
    def condition(self, examples) -> torch.Tensor:
        """The raw condition (H,) of ``examples`` (a Task, Examples, input_ids dicts) or an (H,) tensor."""
        if isinstance(examples, torch.Tensor):
            if examples.dim() != 1 or not torch.isfinite(examples).all():
                raise WorkbenchError(f"a condition tensor must be (H,) and finite; got shape "
                                     f"{tuple(examples.shape)}")
            return examples.detach().float().cpu()
        return task_vector(self.lab, examples, layer=self.layer)

    def standardize(self, c: torch.Tensor) -> torch.Tensor:
        """What the CVAE sees of raw conditions c (..., H): ``(c − mean of the fitted ones) / scale``."""
        self._fitted()
        return (c - self.conditions.mean(0)) / self.scale

    def _describe(self, examples, c: torch.Tensor) -> dict:
        digest = hashlib.sha256(c.numpy().tobytes()).hexdigest()[:16]
        if isinstance(examples, torch.Tensor):
            return {"kind": "given_vector", "dim": int(c.numel()), "digest": digest}
        from workbench.tasks import Task

        n = len(encode_examples(self.lab, examples))
        task = examples.name if isinstance(examples, Task) else None
        return {"kind": "task_vector", "layer": self.layer, "position": "last", "model": "base",
                "n_examples": n, "task": task, "digest": digest}

    # -- fitting ---------------------------------------------------------------------------------
    def fit(self, checkpoints: Mapping[str, Sequence], examples: Mapping[str, object], *, late: float = 0.5,
            steps: int = 400, lr: float = 2e-4, batch_size: int = 2, seed: int = 2024,
            progress: bool = True) -> pd.DataFrame:
        """Fit the CVAE on each task's late checkpoints, conditioned on its examples' task vector.

        Args:
            checkpoints: task name -> that task's checkpoints (Adapters kept by ``workbench.training``
                with ``checkpoint_every``, or PEFT directories); the later ``late`` fraction is used.
            examples: task name -> what its condition is made of (a Task, Examples, dicts with
                input_ids, or an (H,) tensor).
            late, steps, lr, batch_size, seed: see ``late_checkpoints`` and ``fit_cvae``.

        Returns:
            The history: one row per step, ``step, loss, lr, recon, kl``.
        """
        missing = sorted(set(checkpoints) - set(examples))
        if missing:
            raise WorkbenchError(f"no examples for tasks {missing}; give examples[task] for every task")
        data = CheckpointSet.build(checkpoints, late)
        raw = torch.stack([self.condition(examples[t]) for t in data.tasks])  # (T, H)
        scale = float((raw - raw.mean(0)).pow(2).mean().sqrt())
        if scale <= 1e-6 * float(raw.pow(2).mean().sqrt()):  # one task, or tasks with one condition
            scale = 1.0
        with torch.random.fork_rng(devices=[]):  # the network's initial weights, by seed
            torch.manual_seed(seed)
            vae = self._build_vae(data.layout.length, raw.shape[1])
        self.history = fit_cvae(vae, data, (raw - raw.mean(0)) / scale, steps=steps, lr=lr,
                                batch_size=batch_size, seed=seed, progress=progress, label=self.name)
        self.vae, self.data, self.conditions, self.scale = vae.eval(), data, raw, scale
        self.tasks, self.layout, self.stats = list(data.tasks), data.layout, dict(data.stats)
        self.fit_options = {"late": late, "steps": steps, "lr": lr, "batch_size": batch_size, "seed": seed,
                            "checkpoints": {t: int((data.task == i).sum()) for i, t in enumerate(data.tasks)}}
        return self.history

    def _build_vae(self, length: int, cond_dim: int) -> CVAE1D:
        """The network ``fit`` trains (a subclass may wrap the CVAE; see ``ICMFusion``)."""
        return CVAE1D(length, cond_dim, **self.options)

    @classmethod
    def vae_from_config(cls, config: dict) -> CVAE1D:
        """The network of a saved ``vae.config()`` (the inverse of ``config``)."""
        return CVAE1D(**config)

    def extra_config(self) -> dict:
        """What a subclass saves beside the CVAE in ``generator.json`` (JSON-serializable)."""
        return {}

    def extra_tensors(self) -> dict[str, torch.Tensor]:
        """Tensors a subclass saves beside the CVAE in ``generator.safetensors``."""
        return {}

    def restore_extra(self, config: dict, tensors: dict[str, torch.Tensor]) -> None:
        """Read back what ``extra_config`` / ``extra_tensors`` wrote (raise ``WorkbenchError`` if bad)."""

    def _fitted(self) -> CVAE1D:
        if self.vae is None:
            raise WorkbenchError("this ICMLoRA is not fitted yet; call gen.fit(checkpoints, examples) first")
        return self.vae

    def nearest(self, c: torch.Tensor) -> tuple[str, float]:
        """The fitted task whose condition is nearest to ``c`` by cosine, and that cosine."""
        self._fitted()
        cos = torch.nn.functional.cosine_similarity(self.standardize(self.conditions),
                                                    self.standardize(c)[None], dim=1)  # (T,)
        i = int(cos.argmax())
        return self.tasks[i], float(cos[i])

    # -- making adapters -------------------------------------------------------------------------
    def generate(self, task_examples, *, n: int = 1, seed: int = 0, name: str | None = None,
                 stats_from: str | None = None) -> Adapter | list[Adapter]:
        """Adapters for the task of ``task_examples``: ``n`` samples ``dec(z, c)``, z ~ N(0, I).

        Args:
            task_examples: a Task, a list of Examples, dicts with input_ids, or a condition (H,).
            n: samples; seed: seeds z (same seed, same adapters).
            name: the adapter's name (``name_<i>`` when n > 1); default ``icm_<nearest task>_s<seed>``.
            stats_from: the fitted task whose last checkpoint's stats de-normalize (default: nearest).

        Returns:
            One Adapter (n = 1) or a list; none is added to the lab.
        """
        vae = self._fitted()
        if n < 1:
            raise WorkbenchError(f"n counts samples: give 1 or more; got {n}")
        c = self.condition(task_examples)
        near, cos = self.nearest(c)
        stats_task = stats_from or near
        if stats_task not in self.stats:
            raise WorkbenchError(f"stats_from={stats_task!r} is not a fitted task; choose from "
                                 f"{self.tasks}")
        g = torch.Generator().manual_seed(seed)
        xs = vae.sample(self.standardize(c), n, generator=g)  # (n, L)
        base = name or re.sub(r"\W", "_", f"icm_{near}_s{seed}")
        condition = self._describe(task_examples, c) | {"nearest_task": near, "nearest_cosine": round(cos, 6)}
        return_one = n == 1
        out = []
        for i in range(n):
            lineage = {"method": "generate", "generator": self._lineage(), "condition": condition,
                       "seed": seed, "sample": i, "denormalized_with": stats_task, "base": self.lab.name}
            out.append(unflatten(xs[i], self.stats[stats_task], self.layout,
                                 name=base if return_one else f"{base}_{i}", lineage=lineage))
        return out[0] if return_one else out

    def reconstruct(self, adapter: Adapter, examples=None, *, name: str | None = None) -> Adapter:
        """``dec(μ(x, c), c)`` of ``adapter``, de-normalized with its own stats: what the CVAE keeps of it.

        Args:
            adapter: an adapter of the fitted layout.
            examples: its condition's examples (or an (H,) tensor); default: the fitted task its
                lineage names (``lineage["tasks"]``), else the task it is a checkpoint of.
            name: the new adapter's name (default ``<name>_recon``).
        """
        vae = self._fitted()
        flat = flatten(adapter, self.layout)
        if examples is None:
            task = self._task_of(adapter)
            c = self.conditions[self.tasks.index(task)]
            condition = {"kind": "fitted_task", "task": task}
        else:
            c = self.condition(examples)
            condition = self._describe(examples, c)
        x = vae.reconstruct(flat.x.float()[None], self.standardize(c)[None])[0]  # (L,)
        lineage = {"method": "reconstruct", "generator": self._lineage(), "condition": condition,
                   "source": adapter.name, "base": self.lab.name}
        return unflatten(x, flat.stats, self.layout, name=name or f"{adapter.name}_recon",
                         lineage=lineage)

    def _task_of(self, adapter: Adapter) -> str:
        named = [t for t in adapter.lineage.get("tasks") or [] if t in self.tasks]
        if not named and adapter.lineage.get("checkpoint_of") in self.tasks:
            named = [adapter.lineage["checkpoint_of"]]
        if not named and adapter.name in self.tasks:
            named = [adapter.name]
        if not named:
            raise WorkbenchError(f"adapter {adapter.name!r} names no fitted task ({self.tasks}) in its "
                                 "lineage; pass examples=... to give its condition")
        return named[0]

    def _lineage(self) -> dict:
        return {"name": self.name, "cvae": self._fitted().config(), "tasks": list(self.tasks),
                "condition_scale": self.scale, "fit": self.fit_options,
                "reference": "Shao et al., ICM-LoRA, IJCAI 2025, arXiv 2501.17635"}

    # -- files and size --------------------------------------------------------------------------
    def save(self, path) -> Path:
        """Write the fitted generator to a new folder (safetensors + JSON); see ``store``."""
        from workbench.generation.store import save_generator

        return save_generator(self, path)

    @classmethod
    def load(cls, lab, path, **kwargs) -> ICMLoRA:
        """A generator saved by ``save``, for ``lab`` (its base must be the one it was fitted on)."""
        from workbench.generation.store import load_generator

        return load_generator(cls, lab, path, **kwargs)

    def num_parameters(self) -> int:
        """The generator's parameters (the CVAE's; buffers not counted)."""
        return sum(p.numel() for p in self._fitted().parameters())
