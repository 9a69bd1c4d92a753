"""LoRA variants behind ``VARIANTS``: how an adapter starts (init, scaling), how it trains (optimizer and
its options), and optional ``setup``/``finish`` steps around the run (PiSSA's residual base).

``train_lora(variant=...)``, ``MultiTaskTrainer(variant=...)`` and ``sweep`` read them; an explicit
``init=``, ``scaling=``, ``optimizer=`` or ``optimizer_options=`` of the caller wins over the variant's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from workbench.registry import Registry


@dataclass(frozen=True)
class Variant:
    """One LoRA variant.

    Attributes:
        init: an ``INITS`` name (how A and B start).
        scaling: a ``SCALINGS`` name (s as a function of α and r).
        optimizer: an ``OPTIMIZERS`` name; optimizer_options: its options.
        setup: ``setup(lab, name, *, r, alpha, targets, scaling) -> Adapter`` makes the adapter in the
            lab instead of ``lab.new_adapter`` (None: a fresh adapter by ``init``).
        finish: ``finish(lab, name) -> Adapter`` after the last step (the adapter the run returns).
    """

    init: str = "lora"
    scaling: str = "standard"
    optimizer: str = "adamw"
    optimizer_options: dict = field(default_factory=dict)
    setup: Callable | None = None
    finish: Callable | None = None


VARIANTS: Registry[Variant] = Registry("LoRA variant", base=Variant)


def _pissa_setup(lab, name, *, r, alpha, targets, scaling):
    from workbench.training.pissa import pissa_start

    return pissa_start(lab, name, r=r, alpha=alpha, targets=targets, scaling=scaling)


def _pissa_finish(lab, name):
    from workbench.training.pissa import pissa_finish

    return pissa_finish(lab, name)


_VARIANTS = {  # name: (summary, reference, variant)
    "lora": ("Plain LoRA: A random, B = 0, s = α/r, AdamW.",
             'Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022', Variant()),
    "rslora": ("Rank-stabilized LoRA: s = α/√r, so the update scale does not shrink with r.",
               'Kalajdzievski, "A Rank Stabilization Scaling Factor for Fine-Tuning with LoRA", '
               "arXiv 2312.03732, 2023", Variant(scaling="rslora")),
    "loraplus": ("LoRA+: B trains with a learning rate 16 times A's.",
                 'Hayou, Ghosh & Yu, "LoRA+: Efficient Low Rank Adaptation of Large Models", ICML 2024',
                 Variant(optimizer="loraplus")),
    "lorapro": ("LoRA-Pro: gradients adjusted so the low-rank step best matches full fine-tuning.",
                'Wang et al., "LoRA-Pro: Are Low-Rank Adapters Properly Optimized?", ICLR 2025',
                Variant(optimizer="lorapro")),
    "nola": ("NOLA: A and B as random bases mixed by a few trained coefficients.",
             'Koohpayegani et al., "NOLA: Compressing LoRA using Linear Combination of Random Basis", '
             "ICLR 2024", Variant(optimizer="nola")),
    "pissa": ("PiSSA: start on W's top-r singular directions, train on the residual base; finish "
              "converts to a rank-2r LoRA of the original base.",
              'Meng, Wang & Zhang, "PiSSA: Principal Singular Values and Singular Vectors Adaptation of '
              'Large Language Models", NeurIPS 2024', Variant(setup=_pissa_setup, finish=_pissa_finish)),
}
for _name, (_summary, _reference, _variant) in _VARIANTS.items():
    VARIANTS.register(_name, summary=_summary, reference=_reference)(_variant)


def resolve(variant: str, *, init: str | None = None, scaling: str | None = None,
            optimizer: str | None = None, optimizer_options: dict | None = None) -> tuple[Variant, dict]:
    """The variant and the run's ``init, scaling, optimizer, optimizer_options`` (the caller's win)."""
    v = VARIANTS.get(variant)
    opt = optimizer or v.optimizer
    if optimizer_options is None:
        optimizer_options = dict(v.optimizer_options) if opt == v.optimizer else {}
    return v, {"init": init or v.init, "scaling": scaling or v.scaling, "optimizer": opt,
               "optimizer_options": optimizer_options}
