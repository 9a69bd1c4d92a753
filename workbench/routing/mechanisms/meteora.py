"""MeteoRA: a gate per projection picks the top-k adapters of a frozen bank of the lab's LoRAs per token.

    ℓ = W_g x                                                    (…, L)   W_g (L, in), no bias
    default ("accelerated" path of the code):  (v, idx) = topk(ℓ, k);  w = softmax(v / T)   (k = 1 ⇒ w = 1)
    reference_path=True:  p = softmax(ℓ);  (v, idx) = topk(p, k);  w = v / Σv   (no temperature, as the code)
    Δ = Σ_{j∈idx} w_j · s_j · B_j A_j dropout(x)                 dropout p = 0.1 (hard-coded in the code)

The bank is L adapters of the lab (``bank=[names]``), read at ``add_router`` time and stacked per
module: A (L, r_max, in), B (L, out, r_max), zero-padded when ranks differ (padding adds nothing);
s_j is adapter j's own scale at that module (α_j/r_j, or α_j/√r_j for rsLoRA). The bank is a copy
held as buffers, so the lab's adapters are never touched; ``train_loras=True`` makes the copies
trainable parameters (the released meteora_train.py does this; the paper trains the gate only).

Gate loss (training forwards): 50 · CE(ℓ, task label) with ℓ of every gate of the routed adapter
concatenated; the label of every real token (``attention_mask``) is the bank index of its sample's
task (``task`` (B,) from the routing context, through ``task_to_adapter`` or the identity). As the
code, logits are shifted by one against the labels like LM labels (``shift=False`` to turn off);
with right padding this only drops each sequence's last logit. Padding tokens are ignored (−100).
Note: an older version of the code sums one CE per gate; the spec's @2d192ad concatenates (followed).

Not mergeable into W0 (the gate is input-dependent); ``workbench.routing.freeze`` makes a static
weighted merge from the average gate weights over a prompt set.

Reference: Xu et al., "MeteoRA: Multiple-tasks Embedded LoRA for Large Language Models" (arXiv
2405.13053, ICLR'25); code github NJUDeepEngine/meteora @2d192ad, MoELoRA/layer.py (forward paths),
base_model/llama/modeling_llama_meteor.py (lora_gate_loss_func, moe_aux_loss_coef=50).
Defaults k=2, T=1, dropout 0.1, gate coefficient 50 from the code; W_g has nn.Linear's default init
(the code re-creates the gate after all adapters load, overwriting an earlier N(0, 1) init).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from workbench.errors import WorkbenchError
from workbench.routing.bank import plain_bank
from workbench.routing.base import ROUTERS, Router
from workbench.routing.context import context_value, token_mask
from workbench.routing.factors import linear_weight
from workbench.routing.gates import check_k, topk_dense
from workbench.routing.losses import AUX_LOSSES

IGNORE = -100  # label of tokens the gate loss skips (padding), as torch's cross_entropy


@ROUTERS.register("meteora", flags=("bank", "exportable", "freezable", "needs_task_labels"),
                  bounds={"k": (1, None), "T": (0.0, None), "dropout": (0.0, 1.0), "gate_coef": (0.0, None)})
class MeteoRA(Router):
    """MeteoRA: a gate per projection picks the top-k adapters of a frozen bank of the lab's LoRAs per token.

    Args:
        bank: names of the lab's adapters the gates choose from.
        k: adapters active per token.
        T: softmax temperature over the top-k logits (the default path).
        reference_path: softmax over all adapters, then top-k renormalised (the released code's path).
        dropout: dropout probability on the bank's input.
        gate_coef: coefficient of the gate loss (CE of the gate logits against each token's task).
        task_to_adapter: maps the routing context's task id to a bank index (default: identity).
        shift: shift the gate logits by one against the labels, like LM labels (as the code).
        train_loras: make the bank's copied factors trainable (the released trainer), not only the gates.
    """

    # The paper's adapters cover q,k,v,o,gate,up,down = "all-linear" on Llama; by default MeteoRA
    # routes wherever every adapter of the bank has factors (`targets_for`).
    default_targets = "all-linear"
    reference = "MeteoRA, arXiv 2405.13053; github NJUDeepEngine/meteora @2d192ad MoELoRA/layer.py"

    def __init__(self, in_features: int, out_features: int, *, generator: torch.Generator,
                 bank: list[str], factors: list[tuple[torch.Tensor, torch.Tensor, float]], k: int = 2,
                 T: float = 1.0, reference_path: bool = False, dropout: float = 0.1,
                 gate_coef: float = 50.0, task_to_adapter: dict[int, int] | None = None,
                 shift: bool = True, train_loras: bool = False):
        super().__init__()
        self.bank = list(bank)
        n = len(factors)
        self.k = check_k(k, n, "adapters in the bank")
        self.T, self.reference_path, self.dropout = T, reference_path, dropout
        self.gate_coef, self.shift = gate_coef, shift
        self.task_to_adapter = None if task_to_adapter is None else {int(t): int(j)
                                                                    for t, j in task_to_adapter.items()}
        self.ranks = [A.shape[0] for A, _, _ in factors]
        r_max = max(self.ranks)
        A = torch.zeros(n, r_max, in_features)
        B = torch.zeros(n, out_features, r_max)
        for j, (a, b, _) in enumerate(factors):
            A[j, : a.shape[0]] = a.detach().float()
            B[j, :, : b.shape[1]] = b.detach().float()
        if train_loras:
            self.A, self.B = nn.Parameter(A), nn.Parameter(B)
        else:  # rebuilt from the lab's adapters, so not part of the saved state
            self.register_buffer("A", A, persistent=False)  # (L, r_max, in)
            self.register_buffer("B", B, persistent=False)  # (L, out, r_max)
        self.register_buffer("scales", torch.tensor([s for _, _, s in factors], dtype=torch.float32),
                             persistent=False)  # (L,)
        self.gate = linear_weight(n, in_features, generator)  # W_g (L, in)

    # -- building from the lab's adapters ---------------------------------------------------------
    @classmethod
    def build(cls, *, path: str, module: nn.Module, lab, generator: torch.Generator,
              bank: list[str] | None = None, **params) -> MeteoRA:
        adapters = bank_adapters(lab, bank)
        if path not in adapters[0].modules:
            raise WorkbenchError(
                f"MeteoRA bank {[a.name for a in adapters]} has no factors for module {path!r}; it covers "
                f"{_few(adapters[0].modules)}. Pass targets=MeteoRA.targets_for(lab, bank=...) (or a subset)"
            )
        factors = [(a.modules[path].A, a.modules[path].B, a.scale(path)) for a in adapters]
        return cls(module.in_features, module.out_features, generator=generator,
                   bank=[a.name for a in adapters], factors=factors, **params)

    @classmethod
    def targets_for(cls, lab, *, bank: list[str], **_) -> list[str]:
        """The modules every adapter of ``bank`` covers (what MeteoRA routes by default)."""
        return list(bank_adapters(lab, bank)[0].modules)

    def bank_factors(self) -> list[tuple[torch.Tensor, torch.Tensor, float]]:
        """(A_j (r_j, in), B_j (out, r_j), s_j) of each bank adapter, unpadded (used by ``freeze``)."""
        return [(self.A[j, :r].detach(), self.B[j, :, :r].detach(), float(self.scales[j]))
                for j, r in enumerate(self.ranks)]

    # -- forward ----------------------------------------------------------------------------------
    def gate_logits(self, x: torch.Tensor) -> torch.Tensor:
        """ℓ = W_g x, (…, L)."""
        return F.linear(x, self.gate)

    def gates(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(dense weights (…, L), zero off the top-k and summing to 1; selected adapters (…, k))."""
        if self.reference_path:  # softmax over all L, then top-k renormalised
            idx, w = topk_dense(logits.float().softmax(-1), self.k,
                                lambda top: top / top.sum(-1, keepdim=True))
            return w.to(logits.dtype), idx

        def tempered(top: torch.Tensor) -> torch.Tensor:  # softmax of the k values with temperature
            w = torch.ones_like(top) if self.k == 1 else (top.float() / self.T).softmax(-1)
            return w.to(logits.dtype)

        idx, w = topk_dense(logits, self.k, tempered)  # top-k of the logits
        return w, idx

    def forward(self, x: torch.Tensor, base: nn.Module) -> torch.Tensor:
        x = x.to(self.gate.dtype)
        logits = self.gate_logits(x)
        weights, idx = self.gates(logits)
        z = F.dropout(x, self.dropout, self.training) if self.dropout else x
        n, r = self.A.shape[:2]
        h = F.linear(z, self.A.reshape(n * r, -1)).unflatten(-1, (n, r))  # A_j z for every j, (…, L, r)
        g = weights * self.scales  # w_j · s_j, zero off the top-k
        delta = torch.einsum("...lr,lor->...o", h * g[..., None], self.B)
        self.emit(logits, weights, idx)
        if self.training and self.gate_coef:
            self.add_aux("meteora_gate", self.gate_coef, logits=logits, labels=self.token_labels(x),
                         shift=self.shift)
        return delta

    def token_labels(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T) bank index of each token's task from the routing context; −100 on padding."""
        who = f"MeteoRA's gate loss (router {self.owner or '?'})"
        task = torch.as_tensor(context_value("task", needed_by=who), device=x.device).long().reshape(-1)
        if task.shape[0] != x.shape[0]:
            raise WorkbenchError(f"{who}: the context's task has {task.shape[0]} entries for a batch of "
                                 f"{x.shape[0]}; give one task index per sample")
        labels = self._to_bank(task)[:, None].expand(x.shape[:-1]).clone()
        mask = token_mask(x, needed_by=who)
        if mask is not None:
            labels[mask == 0] = IGNORE
        return labels

    def _to_bank(self, task: torch.Tensor) -> torch.Tensor:
        n = len(self.bank)
        if self.task_to_adapter is None:
            bad = [int(t) for t in task if not 0 <= int(t) < n]
            fix = "pass task_to_adapter={task: bank index}"
        else:
            bad = [int(t) for t in task if int(t) not in self.task_to_adapter]
            task = torch.tensor([self.task_to_adapter.get(int(t), 0) for t in task], device=task.device)
            fix = f"add them to task_to_adapter (has {sorted(self.task_to_adapter)})"
        if bad or not ((task >= 0) & (task < n)).all():
            raise WorkbenchError(f"MeteoRA: task ids {sorted(set(bad)) or task.tolist()} have no adapter in "
                                 f"the bank {self.bank} (indices 0..{n - 1}); {fix}")
        return task

    def extra_repr(self) -> str:
        return (f"bank={self.bank}, ranks={self.ranks}, k={self.k}, T={self.T}, "
                f"reference_path={self.reference_path}")


@AUX_LOSSES.register("meteora_gate")
def meteora_gate(payloads: list[dict]) -> torch.Tensor:
    """CE of the gate logits of all gates, concatenated, against per-token task labels (−100 skipped).

    Payload: ``logits`` (B, T, L), ``labels`` (B, T), ``shift`` (logit t against label t+1, as LM labels).
    """
    logits, labels = [], []
    for p in payloads:
        lg, lb = p["logits"], p["labels"]
        if p["shift"]:  # logit t against the label of token t + 1
            lg, lb = lg[..., :-1, :], lb[..., 1:]
        logits.append(lg.reshape(-1, lg.shape[-1]))
        labels.append(lb.reshape(-1))
    logits, labels = torch.cat(logits).float(), torch.cat(labels)
    if not (labels != IGNORE).any():
        return logits.sum() * 0.0  # no real token: nothing to learn (and no NaN)
    return F.cross_entropy(logits, labels, ignore_index=IGNORE)


def bank_adapters(lab, bank: list[str] | None) -> list:
    """The lab's adapters named in ``bank``, checked: known, distinct, all covering the same modules."""
    adapters = plain_bank(lab, bank, "MeteoRA bank")
    first = set(adapters[0].modules)
    for a in adapters[1:]:
        if set(a.modules) != first:
            raise WorkbenchError(
                f"MeteoRA bank adapters must cover the same modules: {adapters[0].name!r} and {a.name!r} "
                f"differ (only in {adapters[0].name!r}: {_few(first - set(a.modules))}; only in {a.name!r}: "
                f"{_few(set(a.modules) - first)}); use adapters trained on the same targets"
            )
    return adapters


def _few(paths, n: int = 4) -> str:
    paths = sorted(paths)
    return str(paths[:n])[:-1] + (f", … {len(paths) - n} more]" if len(paths) > n else "]")
