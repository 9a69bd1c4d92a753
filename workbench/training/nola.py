"""NOLA: A and B as fixed random bases mixed by a few trained coefficients, regenerated from seeds.

Reference: Koohpayegani et al., "NOLA: Compressing LoRA using Linear Combination of Random Basis",
ICLR 2024; parameterisation from the authors' code (``UCDvision/NOLA``, ``model_nola.py``), see
../shared/specs/merging.md §6::

    A = A0 + Σ_{i≤k} α_i Â_i,   Â_i ~ U(−1, 1)/√k     (A0: the usual kaiming-uniform init, frozen)
    B =      Σ_{j≤l} β_j B̂_j,   B̂_j ~ U(−1, 1)/√l     α = β = 0 at init, so ΔW = 0

Only the k + l coefficients per module train. The bases are never stored: each is regenerated from
its seed with a local ``torch.Generator`` (bit-exact), and the coefficient gradients follow the
paper's chain rule ``∂L/∂α_i = ⟨∂L/∂A, Â_i⟩_F``. Here NOLA is an optimizer over the lab's ordinary
(A, B) parameters: it reads their gradients, steps the coefficients with Adam and writes A and B
back, so the trained adapter *is* a plain LoRA (``export`` needs nothing more) and ``compressed()`` is
the compressed form (coefficients, seeds and A0's seed).
"""

from __future__ import annotations

from pathlib import Path

import torch

from workbench.errors import WorkbenchError
from workbench.training.optimizers import OPTIMIZERS, Pairs


def basis(seed: int, count: int, shape: tuple[int, int]) -> torch.Tensor:
    """``count`` random matrices of ``shape``, U(−1, 1)/√count, from ``seed``: (count, *shape)."""
    g = torch.Generator().manual_seed(int(seed))
    return (torch.rand(count, *shape, generator=g) * 2 - 1) / count**0.5


class NOLA(torch.optim.Optimizer):
    """Trains NOLA coefficients for every (A, B) pair; A0 is the pair's A when the optimizer is made.

    Args:
        pairs: ``(A, B, s)`` per module (B must be 0: NOLA starts from ΔW = 0).
        lr: Adam learning rate of the coefficients (paper: 5e-3 on GPT-2, 1e-3 on LLaMA-2).
        k, l: numbers of basis matrices for A and B (paper: 512; library default 128).
        seed: the bases of module m use seeds ``seed·1_000_003 + 2m`` (A) and ``+ 2m + 1`` (B).
    """

    def __init__(self, pairs: Pairs, *, lr: float, weight_decay: float = 0.0, k: int = 64,
                 l: int = 64, seed: int = 0):  # noqa: E741  (k and l: the paper's names)
        self.pairs = list(pairs)
        self.k, self.l, self.seed = k, l, seed
        self.A0 = [A.detach().clone() for A, _, _ in self.pairs]
        self.alpha = [torch.zeros(k, requires_grad=True) for _ in self.pairs]
        self.beta = [torch.zeros(l, requires_grad=True) for _ in self.pairs]
        super().__init__([{"params": self.alpha + self.beta}], {"lr": lr, "weight_decay": weight_decay})
        self.adam = torch.optim.Adam(self.alpha + self.beta, lr=lr, weight_decay=weight_decay)
        self.param_groups = self.adam.param_groups  # the scheduler moves the coefficients' lr

    def seeds(self, m: int) -> tuple[int, int]:
        base = self.seed * 1_000_003 + 2 * m
        return base, base + 1

    def factors(self, m: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(A, B) of module m from its coefficients and regenerated bases."""
        A, B, _ = self.pairs[m]
        sa, sb = self.seeds(m)
        Ab = basis(sa, self.k, tuple(A.shape))  # (k, r, in)
        Bb = basis(sb, self.l, tuple(B.shape))  # (l, out, r)
        a = self.A0[m] + torch.einsum("k,kri->ri", self.alpha[m].detach(), Ab)
        b = torch.einsum("l,lor->or", self.beta[m].detach(), Bb)
        return a, b

    @torch.no_grad()
    def step(self, closure=None):
        for m, (A, B, _) in enumerate(self.pairs):
            if A.grad is None or B.grad is None:
                continue
            sa, sb = self.seeds(m)
            self.alpha[m].grad = torch.einsum("kri,ri->k", basis(sa, self.k, tuple(A.shape)), A.grad.float())
            self.beta[m].grad = torch.einsum("lor,or->l", basis(sb, self.l, tuple(B.shape)), B.grad.float())
        self.adam.step()
        for m, (A, B, _) in enumerate(self.pairs):
            a, b = self.factors(m)
            A.copy_(a.to(A.dtype))
            B.copy_(b.to(B.dtype))

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.adam.zero_grad(set_to_none=set_to_none)

    def compressed(self) -> dict:
        """The compressed adapter: coefficients per module, the seeds, k and l (A0 is the lab's init)."""
        return {"k": self.k, "l": self.l, "seed": self.seed,
                "alpha": [a.detach().clone() for a in self.alpha],
                "beta": [b.detach().clone() for b in self.beta]}

    def num_trainable(self) -> int:
        return len(self.pairs) * (self.k + self.l)


@OPTIMIZERS.register("nola", flags=("needs_pairs",),
                     bounds={"k": (1, None), "l": (1, None), "seed": (0, None)})
def nola(params, pairs: Pairs, *, lr: float, weight_decay: float = 0.0, k: int = 64, l: int = 64,  # noqa: E741
         seed: int = 0) -> NOLA:
    """NOLA coefficients (see ``NOLA``): k + l trained numbers per module instead of r·(in + out).

    Reference: Koohpayegani et al., "NOLA: Compressing LoRA using Linear Combination of Random Basis",
    ICLR 2024.

    Args:
        k: number of random basis matrices mixed into A (paper: 512; library default 128).
        l: number of random basis matrices mixed into B.
        seed: seeds the bases (module m uses ``seed·1_000_003 + 2m`` for A and ``+ 2m + 1`` for B).
    """
    return NOLA(pairs, lr=lr, weight_decay=weight_decay, k=k, l=l, seed=seed)


COMPACT = "nola-compact/1"


def save_compact(optimizer: NOLA, adapter, modules, path, *, init_seed: int | None = None) -> int:
    """Write the compact form of a NOLA-trained adapter: coefficients, seeds and how to remake A0.

    A0 is not stored: it is the adapter's own initialization, remade by ``lab.new_adapter`` from
    ``r, alpha, targets, init, scaling`` and ``init_seed`` (default: the lineage's ``seed``); the
    bases come from the NOLA seeds. The remade A0 is checked bit for bit against the optimizer's
    before anything is written. Returns the file's size in bytes.

    Args:
        optimizer: the NOLA optimizer that trained ``adapter``; modules: the module paths in the
            optimizer's pair order (``MultiTaskTrainer.modules``).
        init_seed: the seed the adapter was made with, when its lineage says otherwise.
    """
    from workbench.adapters import new_adapter

    lin = adapter.lineage
    first = next(iter(adapter.modules.values()))
    ini = {"r": first.r, "alpha": first.alpha, "targets": lin.get("targets"), "init": lin.get("init", "lora"),
           "scaling": adapter.scaling, "seed": lin.get("seed", 0) if init_seed is None else int(init_seed)}
    shapes = {m: (f.out_features, f.in_features) for m, f in adapter.modules.items()}
    remade = new_adapter("check", shapes, r=ini["r"], alpha=ini["alpha"], scaling=ini["scaling"],
                         init=ini["init"], seed=ini["seed"])
    if not all(torch.equal(remade.modules[m].A, A0) for m, A0 in zip(modules, optimizer.A0, strict=True)):
        raise WorkbenchError(f"adapter {adapter.name!r}: its initial A is not init={ini['init']!r} with "
                             f"seed {ini['seed']}, so the compact form could not remake it; pass init_seed= "
                             "(the seed the adapter was made with)")
    packed = optimizer.compressed()
    packed["alpha"] = torch.stack(packed["alpha"])  # (M, k)
    packed["beta"] = torch.stack(packed["beta"])  # (M, l)
    torch.save({"format": COMPACT, **packed, "modules": list(modules), "init": ini}, path)
    return Path(path).stat().st_size


def load_compact(lab, name: str, path):
    """Add adapter ``name`` to ``lab`` from a compact NOLA file: A0 remade, bases regenerated, mixed.

    The factors are computed exactly as the optimizer computed them (``A0 + Σ α_i Â_i``,
    ``Σ β_j B̂_j``), so a reload is bit-exact on the same machine.
    """
    state = torch.load(path, weights_only=True)
    if state.get("format") != COMPACT:
        raise WorkbenchError(f"{path} is not a compact NOLA file (format {state.get('format')!r}, "
                             f"expected {COMPACT!r}); write it with save_compact")
    ini = state["init"]
    adapter = lab.new_adapter(name, r=ini["r"], alpha=ini["alpha"], targets=ini["targets"], init=ini["init"],
                              scaling=ini["scaling"], seed=ini["seed"])
    missing = [m for m in state["modules"] if m not in adapter.modules]
    if missing:
        raise WorkbenchError(f"compact NOLA file {path} names modules this lab lacks: {missing[:3]}; load it "
                             "on the base model it was trained on")
    opt = NOLA([(lab.layers[m].lora_A[name], lab.layers[m].lora_B[name], lab.layers[m].scaling[name])
                for m in state["modules"]], lr=1.0, k=state["k"], l=state["l"], seed=state["seed"])
    with torch.no_grad():
        for m, (A, B, _) in enumerate(opt.pairs):
            opt.alpha[m].copy_(state["alpha"][m])
            opt.beta[m].copy_(state["beta"][m])
            a, b = opt.factors(m)
            A.copy_(a.to(A.dtype))
            B.copy_(b.to(B.dtype))
    adapter.lineage = {**adapter.lineage, "method": "nola-compact", "source": str(path)}
    return adapter
