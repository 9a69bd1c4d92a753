"""ICMLoRA on a tiny model: a planted family per task, the condition switching what is generated,
checkpoints from the training lab, lineage, and a generated adapter evaluated and exported to PEFT."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from peft import PeftModel

from tests.conftest import tiny_lab
from tests.generation.helpers import EXAMPLES, planted_family
from tests.tasks.helpers import build_tokenizer
from workbench import Workbench, analysis, zoo
from workbench.errors import WorkbenchError
from workbench.generation import ICMLoRA, flatten, late_checkpoints
from workbench.tasks import Example, Task

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def planted():
    torch.set_num_threads(1)
    lab = tiny_lab()
    families = {"left": planted_family(lab, "left", seed=10), "right": planted_family(lab, "right", seed=11)}
    gen = ICMLoRA(lab, channels=(4, 8, 8, 4), latent=8)
    history = gen.fit(families, EXAMPLES, late=1.0, steps=150, lr=2e-3, batch_size=4, seed=0, progress=False)
    means = {t: torch.stack([flatten(c).x for c in cks]).mean(0) for t, cks in families.items()}
    return lab, gen, history, families, means


def _distance(adapter, mean) -> float:
    return float((flatten(adapter).x - mean).pow(2).mean())


def test_the_condition_picks_the_family(planted):
    _, gen, history, _, means = planted
    assert list(history.columns[:3]) == ["step", "loss", "lr"] and {"recon", "kl"} <= set(history.columns)
    assert history["recon"].tail(10).mean() < 0.7 * history["recon"].head(10).mean()
    for task, other in (("left", "right"), ("right", "left")):
        for adapter in gen.generate(EXAMPLES[task], n=3, seed=1):
            # with the condition ignored both tasks would get the same samples, equally far from both
            assert _distance(adapter, means[task]) < 0.5 * _distance(adapter, means[other])
            assert adapter.lineage["condition"]["nearest_task"] == task


def test_generation_is_seeded_and_samples_differ(planted):
    _, gen, *_ = planted
    a, b = gen.generate(EXAMPLES["left"], n=2, seed=4)
    again = gen.generate(EXAMPLES["left"], n=2, seed=4)[0]
    m = next(iter(a.modules))
    assert torch.equal(a.modules[m].A, again.modules[m].A)
    assert not torch.equal(a.modules[m].A, b.modules[m].A)  # z ~ N(0, I): stochastic generation
    assert a.name == "icm_left_s4_0" and b.lineage["sample"] == 1


def test_lineage_names_the_generator_condition_seed_and_sample(planted):
    lab, gen, *_ = planted
    adapter = gen.generate(EXAMPLES["right"], seed=7, name="made")
    lin = adapter.lineage
    assert lin["method"] == "generate" and lin["generator"]["name"] == "icm_lora"
    assert lin["generator"]["cvae"]["latent"] == 8 and lin["generator"]["tasks"] == ["left", "right"]
    want = {"kind": "task_vector", "layer": "model.layers.1", "position": "last", "n_examples": 2}
    assert {k: lin["condition"][k] for k in want} == want
    assert (lin["seed"], lin["sample"], lin["denormalized_with"]) == (7, 0, "right")
    json.dumps(lin)  # it travels inside a PEFT file
    assert adapter.base_fingerprint == lab.fingerprint
    tensor = gen.generate(gen.conditions[0], seed=7)
    assert tensor.lineage["condition"]["kind"] == "given_vector"


def test_reconstruct_keeps_a_checkpoint_close(planted):
    _, gen, _, families, means = planted
    ckpt = families["left"][-1]
    recon = gen.reconstruct(ckpt)  # condition: the fitted task its lineage names
    assert recon.lineage["condition"] == {"kind": "fitted_task", "task": "left"}
    assert _distance(recon, flatten(ckpt).x) < 0.5 * _distance(recon, means["right"])
    stray = ckpt.copy("stray")
    stray.lineage = {}
    with pytest.raises(WorkbenchError, match="names no fitted task"):
        gen.reconstruct(stray)


def test_checkpoints_are_sorted_by_step_as_a_number_and_the_late_ones_kept():
    lab = tiny_lab()
    ckpts = planted_family(lab, "t", seed=0, n=12)  # steps 10 .. 120
    shuffled = [ckpts[i] for i in (11, 0, 9, 1, 10, 2, 3, 4, 5, 6, 7, 8)]
    for c in shuffled:
        c.lineage.pop("step")  # the step from the name: t_step10, t_step100, t_step110, t_step120, ...
    kept = late_checkpoints(shuffled, late=0.25)
    assert [c.name for c in kept] == ["t_step100", "t_step110", "t_step120"]  # not t_step90 (lexicographic)
    with pytest.raises(WorkbenchError, match="fraction"):
        late_checkpoints(shuffled, late=0)


def test_not_fitted_and_mixed_layouts_are_refused():
    lab = tiny_lab()
    gen = ICMLoRA(lab, channels=(2, 2), latent=2)
    with pytest.raises(WorkbenchError, match="not fitted"):
        gen.generate(EXAMPLES["left"])
    odd = lab.new_adapter("odd", r=4, init="random", seed=0)
    odd.lineage["step"] = 5
    with pytest.raises(WorkbenchError, match="factor shapes"):
        gen.fit({"a": planted_family(lab, "a", seed=1, n=2), "b": [odd]}, {"a": EXAMPLES["left"],
                "b": EXAMPLES["right"]}, late=1.0, steps=1, progress=False)
    with pytest.raises(WorkbenchError, match="no examples"):
        gen.fit({"a": planted_family(lab, "a", seed=1, n=2)}, {}, steps=1, progress=False)


# -- from the training lab's checkpoints to evaluate and PEFT ---------------------------------------
FRUIT = ("apple", "banana", "cherry")


def _tasks() -> dict[str, Task]:
    pick = [Example("which fruit is red ?", "apple", FRUIT), Example("what fruit", "banana", FRUIT),
            Example("answer the letter A", "cherry", FRUIT), Example("which colour", "apple", FRUIT)]
    count = [Example("what is one plus two ?", "three"), Example("what is two plus two ?", "four"),
             Example("what is one plus four ?", "five"), Example("what is three plus three ?", "six")]
    return {"pick": Task("pick", "pick a fruit", "accuracy", train=pick, eval=pick[:2]),
            "count": Task("count", "count", "loss", train=count, eval=count[:2])}


def test_from_training_checkpoints_to_evaluate_and_peft(tmp_path):
    z = zoo.load("tiny-llama")
    lab = Workbench(copy.deepcopy(z.model), build_tokenizer(), name="tiny-llama", fingerprint=z.fingerprint)
    tasks = _tasks()
    runs = {name: lab.train_multitask(name, [task], r=2, steps=8, lr=1e-2, batch_size=2, checkpoint_every=2,
                                      progress=False).checkpoints for name, task in tasks.items()}
    assert [c.lineage["step"] for c in runs["pick"]] == [2, 4, 6, 8]
    gen = ICMLoRA(lab, channels=(2, 4, 2), latent=4)
    history = gen.fit(runs, tasks, late=0.5, steps=6, batch_size=2, progress=False)
    assert len(history) == 6 and gen.fit_options["checkpoints"] == {"pick": 2, "count": 2}
    new = gen.generate(tasks["pick"], seed=0)  # the task's first training examples give the condition
    assert new.lineage["condition"]["task"] == "pick" and new.lineage["condition"]["n_examples"] == 4

    scores = lab.evaluate([new, "pick", None], tasks["pick"], progress=False)
    assert set(scores["adapter"]) == {new.name, "pick", "base"} and new.name not in lab.adapters

    path = lab.save_adapter(new, tmp_path / "gen")
    lab.add_adapter(new)
    lab.use(new.name)
    x = lab.encode(["which fruit is red ?", "what is one plus two ?"])
    ours = lab.run(x)[0].logits
    lab.use(None)
    base = lab.run(x)[0].logits
    assert (ours - base).abs().max() > 1e-4, "the generated adapter must change the output"
    peft_model = PeftModel.from_pretrained(copy.deepcopy(z.model), path).eval()
    with torch.no_grad():
        theirs = peft_model(**x).logits
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    assert json.loads((path / "adapter_config.json").read_text()) is not None


def test_generated_adapters_merge_and_enter_the_geometry(planted):
    lab, gen, _, families, _ = planted
    left, right = gen.generate(EXAMPLES["left"], seed=2, name="gl"), gen.generate(EXAMPLES["right"], seed=2,
                                                                                 name="gr")
    for a in (left, right, families["left"][-1].copy("tl")):
        lab.add_adapter(a)
    try:
        merged = lab.merge(["gl", "gr"], method="task_arithmetic", name="glr")
        assert merged.lineage["merge"]["sources"] and set(merged.modules) == set(left.modules)
        frame = analysis.angles([left, right, lab.adapters["tl"]])
        cos = {frozenset((r.adapter_a, r.adapter_b)): r.cosine for r in frame.itertuples()}
        # the adapter generated for "left" points the way the trained "left" checkpoint does
        assert cos[frozenset(("gl", "tl"))] > cos[frozenset(("gr", "tl"))]
    finally:
        for n in ("glr", "gl", "gr", "tl"):
            if n in lab.adapters:
                lab.remove_adapter(n)


def test_denormalization_uses_the_stats_of_the_nearest_tasks_last_checkpoint(planted):
    _, gen, _, families, _ = planted
    for task, ckpts in families.items():
        assert torch.equal(gen.stats[task], flatten(ckpts[-1]).stats)  # step 80, the latest
    assert gen.data.steps.tolist() == [10, 20, 30, 40, 50, 60, 70, 80] * 2
    forced = gen.generate(EXAMPLES["left"], seed=1, stats_from="right")
    assert forced.lineage["denormalized_with"] == "right"
    with pytest.raises(WorkbenchError, match="not a fitted task"):
        gen.generate(EXAMPLES["left"], stats_from="nowhere")
