# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 09 · More routers on the real model: LoRA-Mixer, RecLoRA and TARA, their claims tried over seeds
#
# Three routed mechanisms that compose several LoRAs, each put on SmolLM2 with the real tasks and
# tried on the claim its paper is built around, against plain LoRA at the same trainable budget, over
# three seeds (mean and 95% t interval):
#
# - **LoRA-Mixer** (2025): task LoRA experts in the attention projections behind a hard–soft top-k
#   router. Claim: the routed mixture beats one LoRA and a static combination of the task LoRAs on a
#   multi-task mix.
# - **RecLoRA** (Zhu et al., 2024): a bank of meta-LoRAs mixed *per user* by weights read from a user
#   vector. Claim: per-context mixtures beat one LoRA for heterogeneous users.
# - **TARA** (Peng et al., 2025): each composed LoRA is masked to its own tokens. Claim: the masks stop
#   one adapter's effect leaking into the other's tokens.
#
# LoRA-Mixer's code is not released: its mechanism here is the workbench's **reconstruction** from the
# abstracts (marked ⚠ in `workbench/routing/mechanisms/lora_mixer.py`). TARA is a diffusion method:
# here its masks act on a causal LM's attention (each adapter's mask is its own conversation turn).
# Every number under "The full run" comes from `lora-workbench reproduce NAME --seeds 0 1 2` (the
# command is in each summary), which writes `results/NAME.{md,csv}`. When `LORA_WORKBENCH_QUICK=1`
# (`make test`) this notebook only reads those results; otherwise it also runs each experiment live in
# quick mode (two steps, one seed), enough to see every part work and far too little to judge a claim.

# %%
import os
import tempfile
from pathlib import Path

import pandas as pd

from widgets.leakage_map import leakage_map
from widgets.user_mixture_map import user_mixture_map
from workbench.experiments import EXPERIMENTS, reproduce, results_root
from widgets.results import interval_bars, show_full

QUICK = os.environ.get("LORA_WORKBENCH_QUICK") == "1"  # set by `make test`: no model, no training
NAMES = ["lora_mixer", "reclora", "tara"]
lab = None
if not QUICK:
    import workbench as wb

    lab = wb.Workbench.from_zoo("smollm2-135m")
scratch_dir = Path(tempfile.mkdtemp(prefix="lw09_"))  # the live quick runs write here, not to results/
EXPERIMENTS.table().set_index("name").loc[NAMES, ["summary", "reference"]]


# %%
def live(name: str, arms=None):
    """The experiment in quick mode on the live lab (skipped under LORA_WORKBENCH_QUICK=1)."""
    if QUICK:
        print(f"LORA_WORKBENCH_QUICK=1: the live run of {name} is skipped (see the full run below)")
        return None
    run = reproduce(name, quick=True, arms=arms, out=scratch_dir, lab=lab, log=lambda s: None)
    return run.table.pivot_table(index=["measure", "task"], columns="arm", values="value").round(3)


# %% [markdown]
# ## 1. LoRA-Mixer: routing task LoRAs in the attention
#
# **Mechanism.** In every attention projection (q, k, v, o), a router `p = softmax(W_r x)` picks the
# top-k of E LoRA experts per token; the forward uses the hard, renormalised top-k gate and the
# backward the soft `p` (a straight-through "hard–soft" gate); a routing loss balances the load and
# sharpens each token's choice (⚠ its form and coefficients are reconstructed). It runs in two regimes:
# experts and router **trained jointly**, or **plug-and-play** routing over frozen task LoRAs.
#
# **Claims tried** (`workbench/experiments/lora_mixer.py`), on the arithmetic, topic and language mix:
# (1) the jointly trained mixer (`mixer`, E = 3 experts of rank 8, top-2) beats a plain LoRA on q/k/v/o
# of the same trainable count (`lora`); (2) routing over the three frozen task LoRAs (`mixer_bank`, the
# shipped ready adapters) beats their static combination (`static`, the mean of the three); (3) the
# routed bank beats the plain LoRA; (4) the bank router sends each task to its own LoRA more often than
# chance (`own_lora_share` against 1/3).
#
# **Measures.** Held-out answers are scored teacher-forced: `loss` is the mean NLL of the answer
# tokens, `accuracy` the first-token accuracy among the choices (topic, language);
# `multitask_loss` is the mean over the tasks. Lower loss is better, so each verdict reads
# `baseline − arm > 0`.

# %%
live("lora_mixer", arms=["static", "mixer_bank"])

# %% [markdown]
# ### The full run

# %%
mixer_full = show_full("lora_mixer")
mixer_full if mixer_full is None else mixer_full.round(3)

# %%
interval_bars(mixer_full, "multitask_loss",
              "LoRA-Mixer: held-out multi-task answer loss (lower is better), 95% interval over seeds")

# %% [markdown]
# ## 2. RecLoRA: per-user mixtures of a meta-LoRA bank
#
# **Mechanism.** Each wrapped module holds M meta-LoRAs. A small MLP reads the user's context vector u
# and gives softmax weights w; the module uses the *mixed factors* `A_u = Σ w_m A_m`, `B_u = Σ w_m B_m`
# (one rank-r LoRA per user, mixed in parameter space).
#
# **Users from task mixes.** Four users, each a different mixture of the real tasks: three specialists
# (80% of one task) and a generalist (a third of each). Their training and held-out examples are drawn
# in those proportions; a user's context u is the mean, over 8 of its training examples, of the base
# model's mean-pooled last hidden state (the paper's u comes from a recommendation model over the user's
# history). Arms: `lora` (one LoRA on q/v of the same trainable count), `reclora` (M = 4 meta-LoRAs of
# rank 8), `reclora_shared` (the same, every sample given the mean user vector: no per-user context).
#
# **Claims tried.** (1) `reclora` beats `lora` on the users' mean held-out answer loss (and on the
# worst user's); (2) it beats `reclora_shared` (the user's own context is what helps); (3) the mixtures
# follow the users (`mix_alignment`: the correlation, over user pairs, of how different their mixture
# weights are and how different their task mixes are).

# %%
live("reclora", arms=["lora", "reclora"])

# %% [markdown]
# ### The full run

# %%
rec_full = show_full("reclora")
rec_full if rec_full is None else rec_full.round(3)

# %%
interval_bars(rec_full, "user_loss", "RecLoRA: held-out answer loss per user, 95% interval over seeds",
              by_task=True)


# %% [markdown]
# **The user × LoRA map.** The weight each user puts on each meta-LoRA (mean over modules), from the
# first seed of the full run (the meta-LoRAs are not aligned across seeds, so the map is read seed by
# seed). Similar rows mean the router mixes those users alike.

# %%
def user_map_of(name: str = "reclora", seed: int = 0):
    """The ``mix_weight`` rows of one seed of the full run as ``analysis.user_mixtures``' frame."""
    csv = results_root() / f"{name}.csv"
    if not csv.exists():
        return None
    table = pd.read_csv(csv, keep_default_na=False)
    part = table[(table.arm == "reclora") & (table.measure == "mix_weight") & (table.seed == seed)]
    if part.empty:
        return None
    user, lora = part.task.str.rsplit("/", n=1).str[0], part.task.str.rsplit("/", n=1).str[1]
    return pd.DataFrame({"layer": None, "module": "mean", "user": user, "lora": lora.astype(int),
                         "weight": part.value})


user_frame = user_map_of()
user_frame if user_frame is None else user_mixture_map(user_frame)

# %% [markdown]
# ## 3. TARA: token masks against leakage
#
# **Mechanism.** Several independently trained LoRAs are applied at once, each multiplied by its own
# token mask (`Δ = Σ_c m_c ⊙ Δ_c`), so that each acts only on its own tokens. TARA masks the
# cross-attention keys and values of a diffusion model's text tokens; here the two task LoRAs (topic
# and language, the shipped ready adapters) act on two-turn conversations, one turn per task, each
# adapter masked to its own turn. Arms: `plain_sum` (the same two plain LoRAs summed on every token:
# the equal-budget plain-LoRA baseline), `tara` (masks on q/k/v/o), `tara_kv` (masks on k/v only,
# TARA's setting). Nothing is trained; the seeds draw different conversations.
#
# **Leakage.** At the positions that predict one task's answer tokens, how much the predictions change
# (KL, nats) when the *other* task's adapter is taken out. Under masks, what remains is what flows
# through attention from the other turn's tokens to later ones (a causal model: none flows backwards).
#
# **Claims tried.** (1) `tara`'s cross-leakage is below `plain_sum`'s; (2) so is `tara_kv`'s; (3) the
# masked composition answers both turns better (lower `composed_loss`) than the plain sum.

# %%
live("tara", arms=["plain_sum", "tara"])

# %% [markdown]
# ### The full run

# %%
tara_full = show_full("tara")
tara_full if tara_full is None else tara_full.round(3)

# %%
interval_bars(tara_full, "cross_leakage",
              "TARA: leakage into the other task's answer tokens (nats), 95% interval over seeds")


# %% [markdown]
# **The leakage map.** Source adapter (rows) × whose answer tokens (columns), one map per composition,
# the mean over seeds of the full run: the diagonal is each adapter's effect on its own answers.

# %%
def leakage_frame_of(summary: pd.DataFrame | None):
    """The ``leakage`` rows of the full run (task = source→target) as ``analysis.leakage``'s frame."""
    if summary is None:
        return None
    part = summary[summary.measure == "leakage"]
    source, target = part.task.str.split("→").str[0], part.task.str.split("→").str[1]
    return pd.DataFrame({"condition": part.arm, "source": source, "target": target,
                         "leakage": part["mean"]})


leak_frame = leakage_frame_of(tara_full)
leak_frame if leak_frame is None else leakage_map(leak_frame)

# %% [markdown]
# ## ALoRA's head maps
#
# ALoRA (reconstructed: no code was released) lets each token's LoRA code z = A x attend, head by head,
# over the codes of the tokens before it. `HeadMaps` draws `analysis.head_attention`: for the module in
# the select, a head's (or the heads' mean) attention of every token (row) over the earlier ones; rows
# sum to 1 and the upper triangle is empty (causal). Under `make test` there is no SmolLM2 here, so
# the view runs on the tiny random Llama with an untrained ALoRA (random token ids, labelled t0, t1,
# ...: it only shows the view at work); otherwise an ALoRA on SmolLM2's attention trains for 40 steps
# on two tasks and reads a real prompt. The router is removed after.

# %%
import torch

from workbench.analysis.head_attention import head_attention
from widgets import HeadMaps

if QUICK:  # the tiny random model: no training, random ids
    from workbench import Workbench, zoo

    tiny = zoo.load("tiny-llama")
    view_lab = Workbench(tiny.model, tiny.tokenizer, name="tiny-llama", fingerprint=tiny.fingerprint)
    head_batch = {"input_ids": torch.randint(0, tiny.model.config.vocab_size, (1, 10),
                                             generator=torch.Generator().manual_seed(0))}
    head_tokens = [f"t{i}" for i in range(10)]
else:
    from workbench import tasks as wb_tasks

    view_lab = lab
    head_batch = view_lab.encode("Paris is the capital of France. What is 12 plus 7?")
    head_tokens = view_lab.tokenizer.convert_ids_to_tokens(head_batch["input_ids"][0])
view_lab.add_router("alora_view", "alora", r=8, heads=2, seed=0)
if not QUICK:
    view_lab.train_router("alora_view", list(wb_tasks.load(["arithmetic", "topic"]).values()), steps=40,
                          progress=False)
with view_lab.using("alora_view"):
    _, head_cache = view_lab.run(head_batch, record="*.routes.alora_view.hook_attn")
view_lab.remove_router("alora_view")
alora_view = HeadMaps.from_frame(head_attention(head_cache, row=0, tokens=head_tokens))
alora_view

# %% [markdown]
# ## What to take away
#
# - Each verdict is decided by the 95% interval of the per-seed paired difference; with three seeds a
#   difference must be large against its spread to be decided, and "not shown" is not "refuted".
# - The schedules are CPU-sized (a few steps, a few held-out examples per task: see each summary's
#   "Settings and deviations"); the papers train far longer. Re-run with more seeds or a longer `full`
#   schedule where more compute is at hand.
# - LoRA-Mixer is a reconstruction from the abstracts, and TARA is moved from diffusion to a causal LM;
#   their verdicts test the workbench's versions of those ideas, as the summaries say.
