"""observe: run a router over groups of prompts (e.g. each task's held-out prompts) and summarise.

    prompts = task_prompts(lab, ["arithmetic", "topic"], n=16)
    seen = observe(lab, "smora", prompts)
    seen.frequency      # layer, module, router, group, expert, frequency, mean_weight
    seen.load           # layer, module, router, expert, load, entropy, cv, group
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd
import torch
from tqdm.auto import tqdm

from workbench import tasks
from workbench.analysis.routing import activation_frequency, expert_load, gate_accuracy
from workbench.errors import WorkbenchError


@dataclass
class Observation:
    frequency: pd.DataFrame
    load: pd.DataFrame
    accuracy: pd.DataFrame | None = None  # when each group names its target expert


def task_prompts(lab, names: list[str], n: int = 16) -> dict[str, list[str]]:
    """The first ``n`` held-out prompts of each task, chat-formatted as the model sees them."""
    loaded = tasks.load(names)
    return {name: [tasks.chat_prompt(lab.tokenizer, t, ex) for ex in t.eval[:n]]
            for name, t in loaded.items()}


@torch.no_grad()
def observe(lab, name: str, prompts: Mapping[str, list[str]], *, targets: Mapping[str, int] | None = None,
            progress: bool = True) -> Observation:
    """Record router ``name`` on each group's prompts (one padded batch per group).

    Args:
        prompts: group -> prompts (``task_prompts`` gives each task's held-out prompts).
        targets: group -> the expert index that should win (a bank router's task adapter); adds
            ``accuracy`` per module.
    """
    if name not in lab.routers:
        raise WorkbenchError(f"no router {name!r} in this lab; it has: {list(lab.routers) or '(none)'}")
    freq, load, acc = [], [], []
    with lab.using(name):
        for group, texts in tqdm(prompts.items(), desc=f"routing of {name}", disable=not progress):
            batch = lab.encode(list(texts))
            _, cache = lab.run(batch, record=f"*.routes.{name}.hook_route")
            mask = batch["attention_mask"]
            freq.append(activation_frequency(cache, groups=[group] * len(texts), mask=mask))
            load.append(expert_load(cache, mask=mask).assign(group=group))
            if targets is not None:
                acc.append(gate_accuracy(cache, [targets[group]] * len(texts), mask=mask).assign(group=group))
    return Observation(pd.concat(freq, ignore_index=True), pd.concat(load, ignore_index=True),
                       pd.concat(acc, ignore_index=True) if acc else None)
