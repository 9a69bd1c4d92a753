"""Trans-LoRA end to end, tiny-llama (ChatML word tokenizer) → tiny-gemma3 (another family, another
tokenizer, Gemma's completion template): the target adapter exports to PEFT and loads in peft with the
lab's logits, its lineage names the source; a failed stage raises a WorkbenchError naming the fix and
leaves both labs' adapters as they were."""

from __future__ import annotations

import pytest
import torch
from peft import PeftModel

from tests.conftest import output_of, tiny_inputs
from tests.transfer.helpers import colour_task, gemma_lab, llama_lab
from workbench import zoo
from workbench.errors import WorkbenchError
from workbench.transfer import STAGES, transfer

FAST = {"n_synthetic": 6, "synthesis": {"max_new_tokens": 6}, "progress": False,
        "discriminator": {"steps": 2, "batch_size": 12}, "training": {"steps": 3, "lr": 0.01, "r": 4}}


def _labs():
    source, target = llama_lab(), gemma_lab()
    source.new_adapter("teacher", r=4, alpha=64, targets="all-linear", init="random", seed=1)  # planted
    return source, target


def test_end_to_end_across_families_exports_to_peft_with_the_labs_logits(tmp_path):
    source, target = _labs()
    result = transfer(source, "teacher", target, colour_task(), seed=0, top=0.5, **FAST)
    adapter, report = result
    assert list(source.adapters) == ["teacher"] and list(target.adapters) == ["teacher_transfer"]
    assert adapter is target.adapters["teacher_transfer"]
    t = adapter.lineage["trans_lora"]
    assert adapter.lineage["method"] == "trans-lora"
    assert (t["source_adapter"], t["source_model"], t["target_model"], t["seed"]) == \
        ("teacher", "tiny-llama", "tiny-gemma3", 0)
    assert 0 < t["n_kept"] <= t["n_generated"] <= 6 and t["n_kept"] == int(result.scores.kept.sum())
    assert list(report.columns) == ["stage", "measure", "value"] and set(report.stage) == set(STAGES)
    assert all(e.target for e in result.labelled) and result.discriminator is None
    assert {e.prompt for e in result.labelled} <= set(result.scores.text[result.scores.kept])
    s = result.samples  # for the embedding map and the score histogram
    assert list(s.columns) == ["text", "group", "value", "kept"]
    assert set(s.group) == {"real", "contrast", "synthetic"} and (s.group == "real").sum() == 6
    assert s[s.group == "synthetic"].kept.sum() == t["n_kept"] and s.value.between(0, 1).all()

    x = tiny_inputs(target.model)
    target.use("teacher_transfer")
    ours = output_of(target.run(x)[0])
    target.use(None)
    assert (ours - output_of(target.run(x)[0])).abs().max() > 1e-5, "distillation must change the target"
    target.save_adapter("teacher_transfer", tmp_path / "t")
    peft_model = PeftModel.from_pretrained(zoo.load("tiny-gemma3").model, tmp_path / "t").eval()
    with torch.no_grad():
        theirs = output_of(peft_model(**x))
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_zero_inputs_kept_fails_naming_the_fix_and_leaves_both_labs_unchanged():
    source, target = _labs()
    source.use("teacher")
    with pytest.raises(WorkbenchError, match=r"stage 'filtering'.*kept none.*top=0\.5"):
        transfer(source, "teacher", target, colour_task(), threshold=0.999, **FAST)
    assert list(source.adapters) == ["teacher"] and list(target.adapters) == []
    assert source.active.names == {"teacher"} and not target.layers  # nothing left wrapped either


def test_a_failed_distillation_removes_the_discriminator_too():
    source, target = _labs()
    bad = FAST | {"training": {"steps": 3, "lr": -1.0}}
    with pytest.raises(WorkbenchError, match=r"stage 'distillation'.*learning rate"):
        transfer(source, "teacher", target, colour_task(), top=0.5, keep_discriminator=True, **bad)
    assert list(source.adapters) == ["teacher"] and list(target.adapters) == []


def test_bad_arguments_are_refused_before_any_work():
    source, target = _labs()
    task = colour_task()
    with pytest.raises(WorkbenchError, match="no adapter 'nope'"):
        transfer(source, "nope", target, task)
    with pytest.raises(WorkbenchError, match="same lab"):
        transfer(source, "teacher", source, task)
    with pytest.raises(WorkbenchError, match="synthesizer"):
        transfer(source, "teacher", target, task, synthesizer="both")
    with pytest.raises(WorkbenchError, match="n_synthetic"):
        transfer(source, "teacher", target, task, n_synthetic=0)
    assert list(source.adapters) == ["teacher"] and list(target.adapters) == []


def test_without_filter_the_target_synthesizes_and_every_input_is_labelled():
    source, target = _labs()
    result = transfer(source, "teacher", target, colour_task(), seed=2, filter=False, synthesizer="target",
                      name="plain", **FAST)
    t = result.adapter.lineage["trans_lora"]
    assert (t["filter"], t["synthesizer"], t["threshold"]) == (False, "target", None)
    assert t["n_kept"] == t["n_generated"] > 0 and result.scores is None and result.samples is None
    assert "discriminator" not in set(result.report.stage)
    assert list(source.adapters) == ["teacher"] and list(target.adapters) == ["plain"]
