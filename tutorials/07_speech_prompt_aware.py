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
# # 07 · Speech + language: WavLLM's prompt-aware LoRA
#
# The frozen Whisper tiny.en encoder (converted from its CTranslate2 weights) hears a clip; its states,
# averaged over 80 ms windows, are projected into SmolLM2 as **speech tokens**. The LM answers one of
# several instructions about the clip: which digit, which command, who speaks, what was said, or two of
# these at once.
#
# WavLLM's **prompt-aware adapter** replaces LoRA's constant α/r by a per-output-channel scale σ that
# a small network computes from the base model's states on the *text prompt alone* (clipped ReLU,
# σ ∈ [0, 3]). Its **curriculum**: stage 1 trains a plain LoRA (σ ≡ α/r) on single tasks; stage 2 adds
# combined-task prompts and trains the prompt adapter. The baseline is a plain LoRA of the same rank
# trained on the same data for the same steps. Speech is synthesized by espeak-ng and flite (9 voices,
# 2 speeds; 2 voices held out); the real human clips of pocketsphinx-testdata are for evaluation.

# %%
import os

import pandas as pd

import workbench as wb
from workbench import multimodal as mm
from workbench.tasks import multimodal as mmt
from workbench.zoo.whisper import transcribe
from widgets import PromptScaleExplorer

QUICK = os.environ.get("LORA_WORKBENCH_QUICK") == "1"
STEPS = (3, 3) if QUICK else (60, 60)  # (stage 1 single tasks, stage 2 + combined tasks)
N_TRAIN, N_EVAL, BATCH = (16, 4, 4) if QUICK else (96, 24, 8)

whisper = wb.zoo.load("whisper-tiny-en")
real = mmt.load("speech-real")["speech-real"]
print("Whisper alone on a real clip:", repr(transcribe(whisper, real.eval[0].audio)), "| reference:",
      real.eval[0].target)

# %%
single = [mmt.MM_TASKS.get(n)(n_train=N_TRAIN, n_eval=N_EVAL)
          for n in ["speech-digits", "speech-commands", "speech-voice"]]
combined = [mmt.MM_TASKS.get("speech-combined")(n_train=N_TRAIN, n_eval=N_EVAL)]
single + combined

# %% [markdown]
# ## Two models on the same LM: prompt-aware (WavLLM) and plain LoRA
#
# Both LoRAs: r = 8, α = 16 on q, k, v, o (α/r = 2 lies inside σ's clamp [0, 3]; the scaler starts
# at σ ≈ α/r, so stage 2 begins from stage 1's plain LoRA). Each model has its own projector, from the
# same seed.

# %%
lab = wb.Workbench.from_zoo("smollm2-135m")
aware = mm.SpeechLanguageModel(lab, whisper, seconds=3.0, pool=4)
aware.add_prompt_aware("wav", r=8, alpha=16.0, dropout=0.0)
plan = aware.curriculum("wav", single, combined, steps=STEPS, lr=1e-3)
history_aware = mm.run_curriculum(aware, plan, batch_size=BATCH)

plain = mm.SpeechLanguageModel(lab, whisper, seconds=3.0, pool=4)
plain._cache = aware._cache  # same frozen encoder states
lab.new_adapter("plain", r=8, alpha=16.0, targets="attention")
history_plain = mm.train_stages(plain, single, [mm.Stage("single tasks", use="plain", steps=STEPS[0])],
                                batch_size=BATCH)
history_plain = pd.concat([history_plain, mm.train_stages(
    plain, single + combined, [mm.Stage("combined tasks", use="plain", steps=STEPS[1])], batch_size=BATCH,
    seed=1)])
pd.DataFrame({"prompt-aware": history_aware.groupby("stage", sort=False).loss.last(),
              "plain": history_plain.groupby("stage", sort=False).loss.last()})

# %% [markdown]
# ## Scores on held-out voices and sentences, and on real human speech
#
# Label accuracy (higher is better) for digits, commands and voice; word error rate (lower is better)
# for the combined task and the real clips (cut to the 3 s window the encoder sees).

# %%
real_eval = mmt.MM_TASKS.get("speech-real")(n_eval=3 if QUICK else 10)
aware.scale_mode = "prompt"
scores = pd.concat([mm.evaluate_joined(aware, single + combined + [real_eval], {"prompt-aware": "wav"}),
                    mm.evaluate_joined(plain, single + combined + [real_eval], {"plain LoRA": "plain"})])
scores.pivot_table(index="task", columns="adapter", values="value")

# %%
{t.name: 1 / len(t.labels) for t in single}  # chance: a guess among each task's answers

# %% [markdown]
# What the two models write for real human speech (the word error rate above counts every inserted
# word, so it can pass 1):

# %%
clips = real_eval.eval[:3]
with lab.using("wav"):
    heard_aware = aware.answer(real_eval, clips)
with lab.using("plain"):
    heard_plain = plain.answer(real_eval, clips)
pd.DataFrame({"reference": [c.target for c in clips], "prompt-aware": heard_aware, "plain LoRA": heard_plain})

# %% [markdown]
# ## The prompt-scale explorer
#
# Each prompt's σ (the 576-wide scale of q/o projections), projected on its first two principal
# components and coloured by task. Edit the prompt in the box: the ringed point is where it lands.

# %%
prompts = {
    "digits": ["Which digit is spoken? Answer with the word.", "What number do you hear?"],
    "commands": ["Which command is spoken?", "What should the robot do?"],
    "voice": ["Who is speaking? Answer with the name.", "Name the speaker."],
    "combined": ["Transcribe the clip, then name the voice after a bar.", "Write the words and the voice."],
}
explorer = PromptScaleExplorer.from_model(aware, "wav", prompts, start="Who is talking?")
explorer

# %%
explorer.scales.frame.groupby("task").value.mean()  # mean σ per task (α/r = 2 is the plain LoRA's constant)

# %% [markdown]
# Does σ tell the tasks apart? Its spread across prompts (per channel, relative to its mean) says how
# much the prompt moves it at all; the share of its variance *between* tasks says how much of that
# movement follows the task (1: one σ per task; 0: the task means coincide).

# %%
sigma = explorer.scales.sigma
{"σ spread across prompts (std ÷ mean)": float(sigma.std(0).mean() / sigma.mean()),
 "share of σ's variance between tasks": explorer.scales.task_share()}
