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
# # 02 · Merging: one adapter from four, by every method, and what each keeps
#
# Merging turns several task adapters into one, without training: the merged update is a function of
# the sources' updates ΔWᵢ = sᵢ·Bᵢ·Aᵢ and their weights wᵢ. The methods differ in what they do with
# entries where the sources disagree (TIES elects a sign, DARE drops entries at random and rescales,
# magnitude pruning keeps the largest ...) and in how they get back to a low-rank adapter (the exact
# concatenation `cat`, an exact SVD of the sum `svd`, k-means over rank-1 units `lora_lego` ...).
#
# On SmolLM2 and the four ready adapters (arithmetic, topic, language, code) this notebook:
#
# 1. merges the four with **every registered method** and reports each merge's error against the
#    exact weighted sum Σ wᵢΔWᵢ;
# 2. scores every merge on each task's held-out data, **normalized by the task's own adapter**
#    (merged ÷ solo; for the loss task `code`, solo ÷ merged, so that 1 means "as good as the solo
#    adapter" everywhere and above 1 means better);
# 3. opens the interactive **MergeBuilder**: controls, live previews, a quick evaluation, commit and
#    export;
# 4. tests the claim of LoRA Soups (learned concatenation, `cat_learned`) against linear merging on
#    a **composite task** whose prompts need two skills at once.
#
# With `LORA_WORKBENCH_QUICK=1` (set by the test suite) it runs a few methods on small slices in a
# couple of minutes; without it, every method on full held-out sets (allow an hour or more on 2 cores:
# 2 h 16 min measured on a shared, loaded machine).

# %%
import os
import time

import pandas as pd
import plotly.express as px

import workbench as wb
from widgets import MergeBuilder
from workbench import merging, ready

QUICK = os.environ.get("LORA_WORKBENCH_QUICK") == "1"  # set by `make test`: few methods, tiny slices
EVAL_LIMIT = 2 if QUICK else 32        # held-out examples per task for the method table (None = all)
COMPOSITE_N = 4 if QUICK else 64       # composite prompts
CAT_STEPS = 4 if QUICK else 60         # training steps of the learned concatenation

lab = wb.Workbench.from_zoo("smollm2-135m")
ready.load_all(lab)
names = list(ready.NAMES)
tasks = wb.tasks.load(names)
print(lab)

# %% [markdown]
# ## 1. Every method on the four ready adapters
#
# The registry `merging.MERGES` holds one entry per method, each with its own parameters and their
# defaults (`merging.method_params`; `MERGES.info(m).params` adds each one's bounds or choices and
# doc) and its capability flags. `cat_learned` (flag `needs_data`) is left out here: it trains, and
# gets its own section below.

# %%
specs = {m: merging.MERGES.info(m) for m in merging.MERGES.names()}
pd.DataFrame([{"method": m, "parameters": merging.method_params(m), "flags": sorted(s.flags),
               "what it does": s.summary[:110]} for m, s in specs.items()]).set_index("method")

# %% [markdown]
# Every method merges the four adapters with weight 1 each and its default parameters. Each
# `MergeResult` carries the merged adapter (with its lineage: method, parameters, weights, seed,
# sources), and its error per module against the exact sum Σ wᵢΔWᵢ: 0 for an exact method
# (`cat`), the Eckart–Young tail for `svd`, and the price of the trimming for the sparsifying ones.

# %%
QUICK_METHODS = ["task_arithmetic", "svd", "cat"]  # the fast ones (no dense elementwise work)
methods = [m for m, s in specs.items() if "needs_data" not in s.flags and (not QUICK or m in QUICK_METHODS)]
sources = [lab.adapters[n] for n in names]
merged, rows = {}, []
for m in methods:
    start = time.perf_counter()
    result = merging.merge(sources, m, [1.0] * len(sources), name=m)
    seconds = time.perf_counter() - start
    merged[m] = result
    ranks = sorted(set(result.adapter.ranks.values()))
    rows.append({"method": m, "rank": ranks[0] if len(ranks) == 1 else f"{ranks[0]}–{ranks[-1]}",
                 "parameters": result.adapter.num_parameters(), "total relative error": result.total_error,
                 "worst module error": result.error.value.max(), "seconds": seconds})
errors = pd.DataFrame(rows).set_index("method")
errors.round(4)

# %% [markdown]
# ## 2. What each merge keeps: per-task scores, normalized by the solo adapter
#
# Each merge is added to the lab and scored on the same held-out slice as the four solo adapters
# and the base model.

# %%
for result in merged.values():
    lab.add_adapter(result.adapter)
scores = lab.evaluate([None, *names, *merged], tasks, limit=EVAL_LIMIT)
table = scores.pivot(index="adapter", columns="task", values="value")[names]
table.loc[["base", *names, *merged]].round(3)

# %% [markdown]
# Normalized score = merged ÷ solo for the three tasks scored by accuracy or exact match, and
# solo ÷ merged for the `code` loss (lower is better): 1 keeps the solo adapter's quality, 0.5 is
# half of it (or twice its loss). A solo score of 0 leaves the ratio undefined (NaN), which can happen
# for `arithmetic` on small slices. `wb.evaluation.normalize` does it, given each task's solo
# adapter (its owner: here the adapter named like the task; `wb.evaluation.owner` reads the lineage).

# %%
owners = wb.evaluation.owners(names, lab.adapters, among=names)
merges = wb.evaluation.normalize(scores, owners)
merges = merges[merges.adapter.isin(list(merged))]
normalized = merges.pivot(index="adapter", columns="task", values="normalized")[names]
normalized["mean"] = normalized.mean(axis=1)
normalized = normalized.sort_values("mean", ascending=False)
normalized.round(3)

# %%
long = normalized.drop(columns="mean").reset_index().melt(id_vars="adapter", var_name="task",
                                                          value_name="normalized")
fig = px.bar(long, x="adapter", y="normalized", color="task", barmode="group", template="plotly_white",
             height=420, title=f"Merged ÷ solo per task ({EVAL_LIMIT or 'all'} held-out examples per task; "
                               "code: solo loss ÷ merged loss)")
fig.add_hline(y=1, line_dash="dot", annotation_text="solo adapter")
fig

# %% [markdown]
# What the table says (computed from the numbers above):

# %%
def mean_of(method: str) -> float:
    return normalized["mean"].get(method, float("nan"))


best = normalized.index[0]
print(f"best mean normalized score: {best} ({mean_of(best):.3f}); worst: {normalized.index[-1]} "
      f"({normalized['mean'].iloc[-1]:.3f})")
for task in names:
    col = normalized[task].dropna()
    if len(col):
        print(f"{task:10}: best kept by {col.idxmax()} ({col.max():.2f}), "
              f"worst by {col.idxmin()} ({col.min():.2f})")
# the orderings the papers report, checked here (a pair is skipped when a method did not run)
claims = [("ties", "task_arithmetic", "TIES-Merging (Yadav et al. 2023): TIES > task arithmetic"),
          ("dare_ties", "ties", "DARE (Yu et al. 2024): DARE + TIES ≥ TIES"),
          ("dare_linear", "task_arithmetic", "DARE (Yu et al. 2024): DARE + linear ≥ task arithmetic"),
          ("della", "dare_ties", "DELLA (Deep et al. 2024): DELLA > DARE"),
          ("breadcrumbs", "task_arithmetic", "Model Breadcrumbs (Davari & Belilovsky 2024): > task arith."),
          ("knots", "ties", "KnOTS (Stoica et al. 2025): KnOTS-TIES > TIES"),
          ("lora_lego", "task_arithmetic", "LoRA-LEGO (Zhao et al. 2025): LEGO ≥ task arithmetic")]
for a, b, claim in claims:
    if a in normalized.index and b in normalized.index:
        verdict = "holds" if mean_of(a) >= mean_of(b) else "does NOT hold"
        print(f"{claim}: {a} {mean_of(a):.3f} vs {b} {mean_of(b):.3f} -> {verdict} here")

# %% [markdown]
# Read these with the error table of section 1 in mind: with four nearly orthogonal updates
# (notebook 01), plain task arithmetic loses little, while trimming to a density of 0.2 throws away a
# large share of each update's mass; a method that reconstructs the sum closely tends to keep the
# solo scores. The slices are small (see the title of the plot), so differences of a few hundredths
# are within noise.
#
# ## 3. The MergeBuilder
#
# The same work, interactively. Tick sources, move their weights, choose a method: its parameters'
# controls come from `method_params`. Every change recomputes three previews in Python: the merge's
# **relative error per module and layer**, the **interference map** of the weighted sources (sign
# conflicts after a trim at the method's density) and their **angle matrix**. The status says
# "computing…" until the previews for the latest settings arrive; a preview for earlier settings is
# dimmed and labelled stale. **evaluate** scores the merge and the solo adapters on a few held-out
# examples per task (with a progress bar), **commit** adds the merge to the lab, **export** writes it
# as a PEFT directory.
#
# The interference map is the slow preview (dense elementwise work on every module, some seconds); it
# is cached by sources, weights and density, so switching between methods that keep those is fast.

# %%
builder = MergeBuilder.from_lab(lab, names, tasks=tasks, method="svd", eval_limit=2 if QUICK else 8,
                                name="builder_merge")
builder

# %% [markdown]
# From Python, the same controls: setting a trait recomputes the previews, and the widget above
# follows. `cat` stacks the four updates side by side: exact (the error map turns white), at rank
# Σrᵢ = 32 instead of 8.

# %%
builder.method = "cat"
print(builder.status, "|", builder.summary)

# %%
builder.evaluate()

# %%
builder.method, builder.weights  # the widget's settings as Python sees them: move a control, re-run

# %% [markdown]
# Press **commit** in the widget (or run `builder.commit()`), then re-run the next cell: the new
# adapter is in the lab, with its lineage.

# %%
sorted(lab.adapters)  # after "commit", the merged adapter is listed here

# %%
builder.committed  # what this builder added to the lab

# %% [markdown]
# ## 4. A composite task: learned concatenation against linear merging
#
# LoRA Soups (Prabhakar et al., 2025) trains skill LoRAs separately, then learns, per module, softmax
# weights over them on a small mix of the skills' training data (`cat_learned`), and reports that
# this beats linear merging on tasks that need both skills at once.
#
# Our composite: each prompt carries **two texts**, a chatterbot sentence (the `language` task) and a
# fortunes quote (the `topic` task), and asks for both answers in one line: "German, Food". Neither
# adapter alone knows both halves; a merge must keep both skills *and* let them work in one answer.
# The prompts are built from the two tasks' **held-out** examples, so nothing here was seen in
# training; the learned weights see only the two skills' training data, never a composite prompt.

# %%
lang, top = tasks["language"], tasks["topic"]
LANGS = ", ".join(lang.eval[0].choices[:-1]) + " or " + lang.eval[0].choices[-1]
TOPICS = ", ".join(top.eval[0].choices[:-1]) + " or " + top.eval[0].choices[-1]
QUESTION = (f"Two texts follow. Name the language of text 1 ({LANGS}) and the topic of text 2 ({TOPICS}). "
            "Answer with the language and the topic, separated by a comma.")


def body(example) -> str:
    """The text of a task example, without the task's own question."""
    return example.prompt.split("\n\n", 1)[1]


composite_examples = [
    wb.tasks.Example(f"{QUESTION}\n\nText 1: {body(a)}\n\nText 2: {body(b)}", f"{a.target}, {b.target}")
    for a, b in zip(lang.eval[:COMPOSITE_N], top.eval[:COMPOSITE_N], strict=False)]
composite = {metric: wb.tasks.Task(f"composite_{metric}", "language of text 1, topic of text 2", metric,
                                   train=[], eval=composite_examples, max_new_tokens=8, max_length=256)
             for metric in ("exact_match", "loss")}
print(composite_examples[0].prompt[:400], "…\n->", composite_examples[0].target)

# %% [markdown]
# The contenders, all from the same two adapters: linear merges (task arithmetic with weights 1, 1
# and 0.5, 0.5), in full mode also TIES and DARE-TIES (at the TIES default density 0.2, as the
# paper's baselines), and `cat_learned`, trained for `CAT_STEPS` steps on a small mix (5%, at least
# 16 examples) of the two skills' training sets, then exported as one rank-16 adapter.

# %%
pair = ["language", "topic"]
contenders = {
    "linear_1_1": lab.merge(pair, method="task_arithmetic", weights=[1.0, 1.0], name="linear_1_1"),
    "linear_half": lab.merge(pair, method="task_arithmetic", weights=[0.5, 0.5], name="linear_half"),
}
if not QUICK:  # dense elementwise merges: some seconds each
    contenders["ties_pair"] = lab.merge(pair, method="ties", name="ties_pair", density=0.2)
    contenders["dare_ties_pair"] = lab.merge(pair, method="dare_ties", name="dare_ties_pair", density=0.2)
start = time.perf_counter()
contenders["cat_learned"] = lab.merge(pair, method="cat_learned", name="cat_learned",
                                      tasks=[lang, top], steps=CAT_STEPS)
soup = contenders["cat_learned"].lineage["merge"]
print(f"cat_learned: {soup['learned']['steps']} steps on {soup['learned']['examples']} examples in "
      f"{time.perf_counter() - start:.0f} s, final training loss {soup['learned']['final_loss']:.3f}")

# %%
runs = [None, *pair, *contenders]
tables = [lab.evaluate(runs, list(composite.values()))]
if not QUICK:  # and each skill on its own, to see what the merges keep of it
    tables.append(lab.evaluate(runs, [lang, top], limit=EVAL_LIMIT))
result_table = pd.concat(tables).pivot(index="adapter", columns="task", values="value").loc[
    ["base", *pair, *contenders]]
result_table.round(3)

# %%
loss = result_table["composite_loss"]
exact = result_table["composite_exact_match"]
linear = ["linear_1_1", "linear_half"]
others = [n for n in contenders if n != "cat_learned"]
merges_ = ["cat_learned", *others]
print("composite loss (lower is better): " + ", ".join(f"{n} {loss[n]:.3f}" for n in merges_))
print("composite exact match: " + ", ".join(f"{n} {exact[n]:.3f}" for n in merges_))
print(f"composite loss without merging: language {loss['language']:.3f}, topic {loss['topic']:.3f}, "
      f"base {loss['base']:.3f}")
for label, rivals in [("linear merging", linear), ("every other merge", others)]:
    verdict = "holds" if loss["cat_learned"] < loss[rivals].min() else "does NOT hold"
    print(f"LoRA Soups' ordering (CAT better than {label}) {verdict} here on the composite loss")

# %% [markdown]
# The learned weights, from the adapter's lineage: per module, the softmax share of `language`
# (the share of `topic` is one minus it). The paper expects the skills to take different layers.

# %%
from workbench.naming import split_module_name

shares = pd.DataFrame([{"layer": split_module_name(path)[0], "module": split_module_name(path)[1],
                        "language share": w["language"]}
                       for path, w in soup["learned"]["weights"].items()])
px.imshow(shares.pivot(index="module", columns="layer", values="language share"), zmin=0, zmax=1,
          color_continuous_scale="RdBu", aspect="auto", height=260,
          title="cat_learned: softmax share of the language adapter per module and layer")

# %%
by_third = shares.groupby(pd.cut(shares.layer.astype(int), 3, labels=["first", "middle", "last"]),
                          observed=True)["language share"].mean()
print("mean language share per third of the network:", by_third.round(3).to_dict())

# %% [markdown]
# Export: any of these is a plain PEFT directory with its lineage in the config.

# %%
import tempfile

out = lab.save_adapter("cat_learned", os.path.join(tempfile.mkdtemp(), "cat_learned"))
print(out, sorted(os.listdir(out)))

# %% [markdown]
# ## 5. LoRA-LEGO: clusters of rank-1 units, and its claims tried over seeds
#
# **Mechanism.** LoRA-LEGO (Zhao et al., ICLR 2025) takes a LoRA apart into its *Minimal Semantic
# Units*: rank j of adapter i is one unit (aⱼ, bⱼ), whose update is bⱼ·aⱼᵀ; a LoRA is the sum of its
# units, in any order. It pools the units of all sources (32 per module here: four adapters of rank 8),
# clusters them with k-means into k = r = 8 clusters, and rebuilds a rank-8 LoRA from the centroids.
# Its **dual reweighting** then fixes the scale: *parameter reweighting* puts each centroid back at its
# members' mean norm (averaging shrinks it), *output reweighting* rescales the merged ΔW' so its output
# variance matches a source's (the workbench's reconstruction `output_reweight="match"`; the paper
# gives no code). `workbench.merging.methods.lora_lego.lego_clusters` returns exactly the units and
# k-means labels a merge uses; `analysis.unit_clusters.cluster_frame` lays them out (source, rank index,
# cluster, a 2-D PCA of the unit vectors) and `widgets.lego_clusters.lego_cluster_figure` draws them:
# colour is the cluster, the marker the source LoRA.
#
# The four ready adapters were all trained from **seed 0**, so their A factors start equal (their
# cosine is still 0.91–0.95 after training). Watch what that does to the clusters: below, the units as
# stored (`unit_basis="factors"`, the paper's), then the same updates re-factored by each source's SVD
# first (`unit_basis="svd"`, our ablation), which no shared initialisation can steer.

# %%
from widgets.lego_clusters import lego_cluster_figure
from widgets.results import interval_bars, show_full
from workbench.analysis.unit_clusters import cluster_frame, cluster_measures
from workbench.merging.methods.lora_lego import lego_clusters

bank = [lab.adapters[n] for n in names]
lego_path = "model.layers.15.self_attn.q_proj"
lego_units = {basis: lego_clusters(bank, rank=8, seed=0, paths=[lego_path], unit_basis=basis)
              for basis in ("factors", "svd")}
lego_frames = {basis: cluster_frame(c) for basis, c in lego_units.items()}
lego_cluster_figure(lego_frames["factors"], title=f"units as stored ({lego_path}): clusters = rank indices")

# %%
lego_cluster_figure(lego_frames["svd"], title=f"units re-factored by SVD ({lego_path})")

# %% [markdown]
# The cluster measures of this module, on pairs of units from *different* LoRAs:
# `mixed_cluster_share` (clusters of ≥ 2 units that hold units of ≥ 2 LoRAs), `update_cos_gap` (mean
# |cos| of the rank-1 updates bⱼaⱼᵀ of same-cluster pairs minus different-cluster pairs: > 0 means a
# cluster joins units that do alike), `output_cos_gap` (the same on the output directions b) and
# `same_index_share` (same-cluster pairs that share their rank index).

# %%
pd.DataFrame({basis: cluster_measures(c[lego_path]) for basis, c in lego_units.items()}).round(3)

# %% [markdown]
# **Claims, and how they are tried** (`workbench/experiments/lora_lego.py`, `lora-workbench reproduce
# lora_lego --seeds 0 1 2 --threads 1`): the four ready LoRAs merged at the same rank 8 by task
# arithmetic (Σ ΔWᵢ cut by SVD), TIES (density 0.2, cut by SVD), LoRA-LEGO with both halves of the
# reweighting, LoRA-LEGO with parameter reweighting only, and LoRA-LEGO on SVD units. The measure is
# **keep** = (loss_base − loss_merged) / (loss_base − loss_own): the share of each task LoRA's own
# reduction of the held-out answer loss that the merge keeps (1: all of it; below 0: worse than the
# base model), averaged over the three scored tasks as `mean_keep` (the code LoRA is merged too, but
# not scored: its 256-token answers would take most of the CPU time). A seed draws the held-out
# examples (the same for every arm) and seeds k-means; each claim is a paired difference over seeds
# with its 95% t interval. Claim 2 ("the clusters group units from different LoRAs that do similar
# things") rests on `update_cos_gap` > 0, with `mixed_cluster_share` and `same_index_share` beside it.

# %%
lego_full = show_full("lora_lego")
lego_full if lego_full is None else lego_full.round(3)

# %%
interval_bars(lego_full, "mean_keep", "LoRA-LEGO against task arithmetic and TIES at rank 8: share of each "
              "task LoRA's loss gain kept (mean of 3 tasks), 95% interval over seeds")

# %%
interval_bars(lego_full, "keep", "Share of the own LoRA's loss gain kept, per task", by_task=True)

# %% [markdown]
# **What the full run found** (3 seeds, 12 held-out examples per scored task per seed; the table above
# is the source, `results/lora_lego.md` the summary):
#
# * against **TIES** at rank 8, LoRA-LEGO keeps *less*: mean_keep −0.198 [−0.241, −0.156], accuracy
#   −0.139 [−0.199, −0.079]: the claim is **refuted** here. Against **task arithmetic** the kept loss
#   gain is not shown to differ (−0.052 [−0.148, +0.044]) while the multi-task accuracy is higher
#   (+0.069 [+0.010, +0.129]). LoRA-LEGO's loss is almost all on arithmetic (keep 0.05 against 0.30
#   for task arithmetic and 0.60 for TIES).
# * the **clusters**: with the units as stored, every cluster is one rank index across the four LoRAs
#   (same_index_share = 1.000 in every module and seed): the LoRAs share their A initialisation, so
#   k-means pairs up "rank j of every LoRA" whatever those units do. update_cos_gap (+0.139) is "holds"
#   with a zero-width interval because the clusters do not change with the seed; it measures the
#   shared init, not a functional grouping. On SVD units the grouping by index is gone (0.17) and the
#   gap is +0.008 [+0.006, +0.009]: positive, but small.
# * the **output reweighting** ("match") lowers mean_keep against parameter reweighting alone
#   (−0.071 [−0.124, −0.018]): refuted for our reconstruction of it. LoRA-LEGO on SVD units keeps more
#   than task arithmetic on average (+0.086 [−0.038, +0.210]), not shown.
