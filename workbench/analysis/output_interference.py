"""Data-dependent interference: on a task's inputs, does ΔW_b x point along ΔW_a x, or against it?

Weight-space angles (``angles``) weigh every input direction alike. Here x is what the base model
feeds each wrapped linear on real prompts, so only the directions the data visits count. Per
module, for the tokens' inputs X (N, in) and H_a = X A_aᵀ (N, r_a), from the factors only:

    Σ_t <ΔW_a x_t, ΔW_b x_t> = sum((H_aᵀ H_b) ∘ ((s_a B_a)ᵀ (s_b B_b)))

so neither a dense ΔW nor the (N, out) updates are ever built.

    from workbench import analysis
    frame = analysis.output_interference(lab, ["arithmetic", "topic"])   # prompts of their tasks
    pair = frame.query("source == 'topic' and adapter_a == 'topic' and adapter_b == 'arithmetic'")
    pair.pivot(index="layer", columns="module", values="cosine")         # layers x modules
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from workbench import tasks
from workbench.adapters.lineage import tasks_of
from workbench.errors import WorkbenchError
from workbench.hooks import hooks
from workbench.naming import split_module_name
from workbench.ops.frames import tidy
from workbench.tasks.encoding import left_pad, pad_id, prompt_ids

BY = ("module", "layer")


def output_interference(
    lab,
    adapters: Sequence[str] | None = None,
    inputs: Mapping[str, Sequence[str] | Mapping[str, torch.Tensor]] | None = None,
    *,
    n: int = 8,
    by: str = "module",
    batch_size: int = 16,
) -> pd.DataFrame:
    """Cosine and norm ratio of the adapters' updates ΔW x on the inputs x the base model produces.

    For each source (a named set of prompts), the base model alone runs the prompts (``lab.using(None)``)
    and every wrapped linear's input x is taken at each non-padding token. For each pair of adapters:

    - ``cosine`` = Σ_t <ΔW_a x_t, ΔW_b x_t> ÷ √(Σ_t ‖ΔW_a x_t‖² · Σ_t ‖ΔW_b x_t‖²): sums over all the
      source's tokens, not an average of per-token cosines. Near 1: the updates push the same way
      on this data; near -1: they cancel; near 0: they act in unrelated directions.
    - ``norm_ratio`` = √(Σ_t ‖ΔW_b x_t‖² ÷ Σ_t ‖ΔW_a x_t‖²): how strong b is next to a on this data.

    As in ``angles``, an adapter's update is 0 on a module it does not target: with ``by="layer"``
    the inner product sums over the modules both have and each norm over all of its own modules.

    Example:
        >>> lab = Workbench.from_zoo("smollm2-135m"); ready.load_all(lab)  # doctest: +SKIP
        >>> output_interference(lab, ["arithmetic", "code"], by="layer").head()  # doctest: +SKIP

    Args:
        lab: a ``workbench.Workbench`` holding the adapters.
        adapters: names of adapters in the lab (at least two); default: all of them.
        inputs: source name -> prompts (text, encoded with the lab's tokenizer) or a token batch
            (``{"input_ids": (B, T), "attention_mask": (B, T), ...}``, for labs without a tokenizer).
            Default: for each adapter, the tasks it was trained on (``adapters.lineage.tasks_of``) and the
            first ``n`` eval prompts of each, rendered with the chat template.
        n: prompts per task for the default inputs.
        by: ``"module"`` (one row per layer and module both adapters target) or ``"layer"``
            (modules of a layer summed).
        batch_size: rows per forward pass.

    Returns:
        A tidy frame with every ordered pair, the diagonal included, columns
        ``source, layer, [module,] adapter_a, adapter_b, cosine, norm_ratio``. ``cosine`` is NaN
        where an update is zero on the data, ``norm_ratio`` where ΔW_a x is.

    Raises:
        WorkbenchError: unknown ``by`` or adapter names, fewer than two adapters, ``n`` or
            ``batch_size`` below 1, text without a tokenizer, adapters merged into the base weights,
            or default inputs for an adapter whose lineage names no task.

    Reference: Ortiz-Jiménez et al., "Task Arithmetic in the Tangent Space", NeurIPS 2023 (weight
    disentanglement: a task vector should change the model on its own task's inputs only).
    """
    if by not in BY:
        raise WorkbenchError(f"output_interference(by={by!r}) is not a view; choose one of {', '.join(BY)}")
    if n < 1 or batch_size < 1:
        raise WorkbenchError(f"n and batch_size count prompts and must be at least 1; got {n}, {batch_size}")
    names = _adapter_names(lab, adapters)
    merged = sorted({m for layer in lab.layers.values() for m in layer.merged})
    if merged:
        raise WorkbenchError(
            f"adapters {merged} are merged into the base weights, so the base would not give the base's "
            "inputs x; call lab.unmerge() first"
        )
    sources = _sources(lab, names, inputs, n)
    stacks = {p: _Stack(lab, names, p) for p, layer in lab.layers.items() if set(layer.names) & set(names)}
    rows = []
    for source, batch in sources.items():
        grams = _input_grams(lab, stacks, batch, batch_size)
        rows += _rows(source, names, stacks, grams, by)
    return tidy(rows)


class _Stack:
    """The factors of one module, stacked over the adapters that have it (float64, on the lab's device)."""

    def __init__(self, lab, names: list[str], path: str):
        self.names = [n for n in names if path in lab.adapters[n].modules]
        factors = [lab.adapters[n].factors(path) for n in self.names]  # (A, s·B) each
        device = lab.device
        self.A = torch.cat([a.detach().to(device, torch.float64) for a, _ in factors])  # (Σr, in)
        sB = torch.cat([b.detach().to(device, torch.float64) for _, b in factors], dim=1)  # (out, Σr)
        self.gram_B = sB.T @ sB  # (Σr, Σr)
        ranks = torch.tensor([a.shape[0] for a, _ in factors], device=device)
        self.E = torch.eye(len(factors), dtype=torch.float64, device=device).repeat_interleave(ranks, dim=0)
        # E: (Σr, K), which adapter owns each stacked rank

    def inner_products(self, gram_H: torch.Tensor) -> np.ndarray:
        """(K, K) Σ_t <ΔW_i x_t, ΔW_j x_t> from the input Gram Σ_t (A x_t)(A x_t)ᵀ over the stacked ranks."""
        return (self.E.T @ (gram_H * self.gram_B) @ self.E).cpu().numpy()


@torch.no_grad()
def _input_grams(lab, stacks: dict[str, _Stack], batch: dict[str, torch.Tensor],
                 batch_size: int) -> dict[str, torch.Tensor]:
    """Path -> Σ_t H_tᵀ H_t with H_t = A x_t (stacked ranks), over the non-padding tokens of ``batch``."""
    grams = {p: s.A.new_zeros(len(s.A), len(s.A)) for p, s in stacks.items()}  # (Σr, Σr) each
    mask: list[torch.Tensor] = []  # the current chunk's (B, T) token mask, read by the hooks

    def take(path: str, _module, args) -> None:
        x = args[0]  # (B, T, in)
        if x.shape[:-1] != mask[0].shape:
            raise WorkbenchError(
                f"module {path!r} got input of shape {tuple(x.shape)}, not (batch, tokens, features) "
                f"matching the attention mask {tuple(mask[0].shape)}; output_interference needs "
                "per-token inputs"
            )
        H = x[mask[0]].to(torch.float64) @ stacks[path].A.T  # (N, Σr)
        grams[path] += H.T @ H

    # the base alone in eval mode (x is what the base produces); each stacked module's input goes to ``take``
    with lab.session(None, train=False), hooks(lab.model, dict.fromkeys(stacks, take), pre=True):
        for start in range(0, len(batch["input_ids"]), batch_size):
            chunk = {k: v[start:start + batch_size].to(lab.device) for k, v in batch.items()}
            mask[:] = [chunk["attention_mask"].bool()]
            lab.model(**chunk)
    return grams


def _rows(source: str, names: list[str], stacks: dict[str, _Stack], grams: dict[str, torch.Tensor],
          by: str) -> list[dict]:
    """Sum inner products into groups (module or layer), then one row per ordered pair and group."""
    index = {n: i for i, n in enumerate(names)}
    K = len(names)
    groups: dict[object, tuple[np.ndarray, np.ndarray]] = {}  # key -> (K, K) inner products, presence
    for path, stack in stacks.items():
        key = path if by == "module" else split_module_name(path)[0]
        ip, present = groups.setdefault(key, (np.zeros((K, K)), np.zeros(K, dtype=bool)))
        idx = np.array([index[n] for n in stack.names])
        ip[np.ix_(idx, idx)] += stack.inner_products(grams[path])
        present[idx] = True
    rows = []
    for key, (ip, present) in groups.items():
        layer, module = split_module_name(key) if by == "module" else (key, None)
        for i, a in enumerate(names):
            for j, b in enumerate(names):
                if not (present[i] and present[j]):
                    continue  # one of the pair has nothing here
                norms = ip[i, i] * ip[j, j]
                where = {"layer": layer, "module": module} if by == "module" else {"layer": layer}
                rows.append({
                    "source": source, **where, "adapter_a": a, "adapter_b": b,
                    "cosine": float(np.clip(ip[i, j] / np.sqrt(norms), -1, 1)) if norms > 0 else np.nan,
                    "norm_ratio": float(np.sqrt(ip[j, j] / ip[i, i])) if ip[i, i] > 0 else np.nan,
                })
    return rows


def _adapter_names(lab, adapters: Sequence[str] | None) -> list[str]:
    """The chosen adapter names, checked: all in the lab, at least two."""
    if isinstance(adapters, str):
        raise WorkbenchError(f"give several adapter names (a list), not one string {adapters!r}")
    names = list(dict.fromkeys(lab.adapters if adapters is None else adapters))
    unknown = [n for n in names if n not in lab.adapters]
    if unknown:
        raise WorkbenchError(f"no adapter(s) {unknown} in this lab; it has: {list(lab.adapters) or '(none)'}")
    if len(names) < 2:
        raise WorkbenchError(
            f"output_interference compares adapters; give at least two, got {names} "
            "(add adapters with lab.load_adapter or lab.new_adapter)"
        )
    return names


def _sources(lab, names: list[str], inputs, n: int) -> dict[str, dict[str, torch.Tensor]]:
    """Source name -> token batch with an attention mask (text is encoded with the lab's tokenizer)."""
    if inputs is None:
        return _task_sources(lab, names, n)
    if not inputs:
        raise WorkbenchError("inputs is empty; give {source name: [prompts]} or leave it None")
    out = {}
    for source, value in inputs.items():
        if isinstance(value, Mapping):
            if "input_ids" not in value:
                raise WorkbenchError(f"inputs[{source!r}] has no 'input_ids'; give a token batch")
            batch = dict(value)
            batch.setdefault("attention_mask", torch.ones_like(batch["input_ids"]))
        else:
            texts = [value] if isinstance(value, str) else list(value)
            if not texts:
                raise WorkbenchError(f"inputs[{source!r}] holds no prompts; give at least one")
            _need_tokenizer(lab)
            batch = lab.encode(texts)
        out[str(source)] = batch
    return out


def _task_sources(lab, names: list[str], n: int) -> dict[str, dict[str, torch.Tensor]]:
    """The default inputs: the first ``n`` eval prompts of each task the adapters were trained on."""
    _need_tokenizer(lab)
    task_names: dict[str, None] = {}
    for name in names:
        found = tasks_of(lab.adapters[name], lab.adapters)
        if not found:
            raise WorkbenchError(
                f"adapter {name!r} names no task in its lineage (lineage['tasks']), so there are no default "
                "prompts for it; pass inputs={'source': ['prompt', ...]}"
            )
        task_names.update(dict.fromkeys(found))
    out = {}
    for task_name, task in tasks.load(list(task_names)).items():
        ids = [prompt_ids(lab.tokenizer, task, example) for example in task.eval[:n]]
        out[task_name] = left_pad(ids, pad_id(lab.tokenizer))  # with position_ids: padding shifts nothing
    return out


def _need_tokenizer(lab) -> None:
    if lab.tokenizer is None:
        raise WorkbenchError(
            "output_interference needs a tokenizer to encode prompts, and this lab has none; build the lab "
            "with Workbench(model, tokenizer), or pass token ids: inputs={'source': {'input_ids': ..., "
            "'attention_mask': ...}}"
        )
