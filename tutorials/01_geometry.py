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
# # 01 · Geometry: how the ready adapters relate
#
# Each adapter adds a **task vector** ΔW = s·B·A to every module it targets. Comparing adapters means
# comparing these updates: are two tasks' updates orthogonal (they could be summed without stepping
# on each other), or do they pull the same weights the same way? `workbench.analysis` answers from the
# factors A and B (never a dense ΔW, never the flattened factors), and returns tidy frames;
# `widgets` draws them. In this notebook, on SmolLM2 and the four ready adapters:
#
# 1. which tasks' adapters are close to orthogonal (an interactive angle matrix);
# 2. where in the network they overlap: per module, and in which input/output subspaces;
# 3. how many directions each update really uses (spectra, effective rank);
# 4. where a TIES-style merge would fight (live interference map);
# 5. how their outputs compare on real prompts;
# 6. why the popular "cosine of the flattened LoRA weights" is not a property of the update.
#
# It runs in well under a minute on 2 CPU cores.

# %%
import math

import pandas as pd
import torch

import workbench as wb
from workbench import analysis, ready
from widgets import AngleMatrix, InterferenceMap, Spectrum, SubspaceView

torch.set_num_threads(1)  # geometry is many small products: one thread never waits for another
lab = wb.Workbench.from_zoo("smollm2-135m")
ready.load_all(lab)
adapters = dict(lab.adapters)  # name -> Adapter
names = list(adapters)
pd.DataFrame([{"adapter": n, "modules": len(a.modules), "rank": max(a.ranks.values()),
               "trained on": ", ".join(a.lineage["tasks"]), "steps": a.lineage["steps"],
               "seed": a.lineage["seed"]}
              for n, a in adapters.items()])


# %%
def unordered(frame: pd.DataFrame) -> pd.DataFrame:
    """Keep each pair once (a before b in the adapters' order), dropping the diagonal."""
    order = {n: i for i, n in enumerate(names)}
    return frame[[order[a] < order[b] for a, b in zip(frame.adapter_a, frame.adapter_b, strict=True)]]


# %% [markdown]
# ## 1. Which tasks are close to orthogonal?
#
# `analysis.angles` gives the cosine between two whole task vectors (all 120 modules concatenated),
# computed exactly from the factors: ⟨B₁A₁, B₂A₂⟩ = Σ (B₁ᵀB₂) ∘ (A₁A₂ᵀ).

# %%
total = analysis.angles(adapters)
pairs = unordered(total).sort_values("cosine")
pairs[["adapter_a", "adapter_b", "cosine", "angle_deg"]].round(3)

# %%
D = sum(f.out_features * f.in_features for f in adapters[names[0]].modules.values())
top = pairs.iloc[-1]
rest = pairs.iloc[:-1]
print(f"most aligned pair: {top.adapter_a} · {top.adapter_b}, cosine {top.cosine:.3f} ({top.angle_deg:.1f}°)")
print(f"all other pairs: cosine {rest.cosine.min():.3f} to {rest.cosine.max():.3f} "
      f"({rest.angle_deg.max():.1f}° to {rest.angle_deg.min():.1f}°)")
print(f"a task vector has D = {D:,} entries; two random directions have |cosine| ≈ 1/√D = {D ** -0.5:.5f}, "
      f"{pairs.cosine.abs().min() * math.sqrt(D):.0f}× below the smallest pair")

# %% [markdown]
# Every pair but one is within a few degrees of orthogonal; the exception is printed above (on the
# shipped adapters it is topic · language, plausibly because both answer with a single label word).
# "Close to orthogonal" is still far from random: even the smallest cosine is many times 1/√D. The
# four share a base model and, as section 2 shows, a starting point; they are not independent
# random directions.
#
# The same matrix as a widget. **Click a cell**: Python receives the pair and draws, under the
# matrix, its cosine per module and layer (from `angles(..., by="module")`).

# %%
matrix = AngleMatrix.from_adapters(adapters)
matrix

# %% [markdown]
# Selecting from Python works the same way; here, the most aligned pair:

# %%
matrix.selected = [top.adapter_a, top.adapter_b]

# %%
matrix.selected  # click another cell of the matrix, then re-run this cell: Python sees your click

# %% [markdown]
# ## 2. Where in the network do they overlap?
#
# Per module type, the mean over the 30 layers of the per-module cosine:

# %%
by_module = unordered(analysis.angles(adapters, by="module"))
by_module.assign(pair=by_module.adapter_a + " · " + by_module.adapter_b).pivot_table(
    index="pair", columns="module", values="cosine", aggfunc="mean").round(3)

# %%
mine = by_module[(by_module.adapter_a == top.adapter_a) & (by_module.adapter_b == top.adapter_b)]
peak = mine.loc[mine.cosine.idxmax()]
thirds = mine.groupby(pd.cut(mine.layer.astype(int), 3, labels=["first", "middle", "last"]), observed=True)
print(f"{top.adapter_a} · {top.adapter_b}: strongest module is layer {peak.layer} {peak.module} "
      f"(cosine {peak.cosine:.3f}); mean cosine per third of the network:",
      thirds.cosine.mean().round(3).to_dict())

# %% [markdown]
# The aligned pair is aligned everywhere rather than in one spot: every module type and every third
# of the network carries a clearly positive cosine (printed above), with the peak module standing out.
#
# Cosines compare whole matrices. **Subspaces** ask something else: do two updates read from the
# same input directions (row space, spanned by A) or write into the same output directions (column
# space, spanned by B)? `analysis.subspaces` gives the overlap, the mean squared cosine of the
# principal angles: 1 if one subspace contains the other, 0 if they are orthogonal, about r/d for
# random r-dimensional subspaces of a d-dimensional space.

# %%
sub = analysis.subspaces(adapters)
SubspaceView(sub)

# %%
shapes = {p: (f.out_features, f.in_features, f.r) for p, f in adapters[names[0]].modules.items()}
baseline = {"column": sum(r / o for o, i, r in shapes.values()) / len(shapes),
            "row": sum(r / i for o, i, r in shapes.values()) / len(shapes)}
overlap = unordered(sub).groupby("side").overlap.mean()
for side in ("column", "row"):
    print(f"{side:6} space: mean overlap {overlap[side]:.3f}   (random subspaces: {baseline[side]:.3f})")

# %% [markdown]
# The input (row) spaces overlap far more than the output (column) spaces. Why would four different
# tasks read from the same input directions? All four were trained with seed 0 (see the first
# table), so they started from **the same random A**, and the short training (steps, same table) moves A
# little. Check:
# rebuild that initial A (same seed, same modules) with a random B so that its update has a row
# space, and compare.

# %%
init = wb.adapters.new_adapter("init", lab.shapes("attention"), r=8, alpha=16, seed=0,
                               base_fingerprint=lab.fingerprint)
g = torch.Generator().manual_seed(1)
for f in init.modules.values():
    f.B = torch.randn(f.B.shape, generator=g)  # any full-rank B: the row space is then A's
vs_init = analysis.subspaces({"init": init, **adapters})
vs_init = vs_init[(vs_init.adapter_a == "init") & (vs_init.adapter_b != "init")]
vs_init.pivot_table(index="adapter_b", columns="side", values="overlap").round(3)

# %% [markdown]
# Each trained adapter still reads mostly from the input subspace of its initial A (row overlap
# with `init` printed above), while its output subspace has nothing to do with the random B. So the
# shared input space is an artefact of the shared seed; what tells the tasks apart is B, which is
# where the column-space overlaps (and so the cosines) stay small.
#
# ## 3. Spectra: how many directions does an update use?
#
# `analysis.spectrum` gives the singular values of each module's ΔW from the factors (two QRs and
# an r×r SVD); `effective_rank` condenses them to one number per module, between 1 and r.

# %%
spectra = pd.concat([analysis.spectrum(a) for a in adapters.values()], ignore_index=True)
Spectrum(spectra)

# %%
erank = analysis.effective_rank(spectra)
summary = erank.groupby("adapter", sort=False)[["effective_rank", "energy_top1"]].mean()
summary.join(erank.pivot_table(index="adapter", columns="module", values="effective_rank")).round(2)

# %%
print(f"rank r = 8; mean effective rank {erank.effective_rank.mean():.2f}; "
      f"the top singular direction carries {erank.energy_top1.mean():.0%} of ‖ΔW‖² on average")

# %% [markdown]
# The updates are far from using their 8 directions evenly: the top direction carries most of the
# energy (printed above), the rest is a thin tail. Merging methods that keep a few top directions per
# module (or trim small entries, below) lose less than the nominal rank suggests.
#
# ## 4. Where would a merge fight? (TIES trim)
#
# TIES-merging first trims each weighted update to its largest entries (`density` = kept fraction),
# then elects a sign per entry. `analysis.interference` reports per module how often the kept
# entries of different adapters **disagree in sign** (`conflict_rate`), how many kept entries are
# shared (`overlap`) and how much L1 mass the trim throws away (`mass_lost`).
#
# The map below is live: tick adapters, move the weights, the density, or pick another metric;
# Python recomputes and the map is dimmed (status "computing…") until the new one arrives. It starts
# on the most aligned pair; `imap.frame` is the frame behind the map.

# %%
density = 0.2
imap = InterferenceMap.from_adapters(adapters, active=[top.adapter_a, top.adapter_b], density=density)
aligned = imap.frame  # kept for the table below (the widget's frame follows the controls)
imap

# %% [markdown]
# The same numbers, averaged over modules, for the most aligned and the least aligned pair. If the
# kept entries of two adapters had independent signs and positions, half the shared entries would
# conflict and the overlap would be d/(2−d).

# %%
least = pairs.iloc[0]
unaligned = analysis.interference({n: adapters[n] for n in (least.adapter_a, least.adapter_b)},
                                  density=density)
metrics = ["conflict_rate", "overlap", "mass_lost"]
pd.DataFrame([
    {"pair": f"{top.adapter_a} · {top.adapter_b}", "cosine": top.cosine, **aligned[metrics].mean()},
    {"pair": f"{least.adapter_a} · {least.adapter_b}", "cosine": least.cosine, **unaligned[metrics].mean()},
    {"pair": "independent signs and positions", "conflict_rate": 0.5, "overlap": density / (2 - density)},
]).round(3)

# %% [markdown]
# The aligned pair's kept entries agree in sign far more often than chance; the least aligned pair
# is close to a coin flip; both share more kept positions than independent ones would (table above).
# And the trim alone throws away a large share of each update's L1 mass (`mass_lost`): these
# low-rank updates are dense, worth knowing before trimming them.
#
# ## 5. On real inputs
#
# Weight-space cosines weigh every input direction alike. `analysis.output_interference` runs the
# base model on each task's prompts and compares the updates' outputs ΔW·x on the inputs x each
# module really sees (still from the factors): per layer, the cosine between the two adapters'
# outputs, and `norm_ratio`, how strong the second update is next to the first.

# %%
on_data = analysis.output_interference(lab, [top.adapter_a, top.adapter_b], n=4, by="layer")
on_data = on_data[(on_data.adapter_a == top.adapter_a) & (on_data.adapter_b == top.adapter_b)]
by_layer = analysis.angles(adapters, by="layer")
weight_cos = by_layer[(by_layer.adapter_a == top.adapter_a) & (by_layer.adapter_b == top.adapter_b)]
summary = on_data.groupby("source")[["cosine", "norm_ratio"]].mean()
summary["weight-space cosine"] = weight_cos.cosine.mean()
print(f"mean over layers, {top.adapter_a} · {top.adapter_b}; norm_ratio = |ΔW_{top.adapter_b}·x| / "
      f"|ΔW_{top.adapter_a}·x|")
summary.round(3)

# %%
import plotly.express as px

curves = pd.concat([on_data.assign(on="prompts of " + on_data.source), weight_cos.assign(on="weights")])
px.line(curves, x="layer", y="cosine", color="on", markers=True, template="plotly_white", height=320,
        title=f"{top.adapter_a} · {top.adapter_b}: cosine per layer, on data and in weight space")

# %% [markdown]
# On the prompts of either task, the two updates' outputs line up at least as well as their weights
# do (compare the columns above): the prompts visit few input directions, and along those the
# two updates agree. The norm ratios say which update is stronger on which prompts: each task's own
# adapter has the larger output on its own task's prompts (ratio below 1 on the first adapter's
# prompts, above 1 on the second's).
#
# ## 6. The flattened-factor cosine is not a property of the update
#
# A common shortcut compares LoRAs by the cosine of their flattened factors [A; B]. But (A, B) and
# (R⁻¹A, BR) give the **same** ΔW for any invertible R. `analysis.reparametrize` builds such a twin;
# the true cosine (`angles`) does not move, the flattened one does.

# %%
a, b = adapters[top.adapter_a], adapters[top.adapter_b]
twin = analysis.reparametrize(a, seed=1, name=f"{a.name}_refactored")
path = next(iter(a.modules))
true = analysis.angles({a.name: a, twin.name: twin, b.name: b}).set_index(["adapter_a", "adapter_b"]).cosine
print(f"same update? max |ΔW − ΔW_twin| on {path}: {(a.delta(path) - twin.delta(path)).abs().max():.1e} "
      f"(entries up to {a.delta(path).abs().max():.1e})")
pd.DataFrame([
    {"pair": f"{a.name} · {b.name}", "true cosine": true[a.name, b.name],
     "flattened-factor cosine": analysis.flattened_factor_cosine(a, b)},
    {"pair": f"{twin.name} · {b.name}", "true cosine": true[twin.name, b.name],
     "flattened-factor cosine": analysis.flattened_factor_cosine(twin, b)},
    {"pair": f"{a.name} · {twin.name} (the same ΔW)", "true cosine": true[a.name, twin.name],
     "flattened-factor cosine": analysis.flattened_factor_cosine(a, twin)},
]).round(4)

# %% [markdown]
# Same update, same true cosine, yet the flattened cosine swings from high to about zero, and an
# adapter is "orthogonal" to itself once refactored. On these adapters the flattened number is also
# misleading without any refactoring: the shared initial A (section 2) makes every pair's flattened
# factors look alike:

# %%
pd.DataFrame([{"pair": f"{p.adapter_a} · {p.adapter_b}", "true cosine": p.cosine,
               "flattened-factor cosine": analysis.flattened_factor_cosine(adapters[p.adapter_a],
                                                                           adapters[p.adapter_b])}
              for p in pairs.itertuples()]).round(3)

# %% [markdown]
# Use `analysis.angles` (and `subspaces`) to compare adapters; they depend on ΔW only.
#
# Next: `02_merge`, where these numbers meet actual merges and their scores.
