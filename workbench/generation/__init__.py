"""Generation: LoRA weights made by a generator from a few examples of a task, not trained.

The lab entry point is ``ICMLoRA(lab)``::

    import workbench as wb
    from workbench.generation import ICMLoRA

    lab = wb.Workbench.from_zoo("smollm2-135m")
    tasks = wb.tasks.load(["arithmetic", "topic"])
    runs = {name: lab.train_multitask(name, [task], r=2, targets=["q_proj", "v_proj"], steps=60,
                                      checkpoint_every=2).checkpoints       # checkpoints with lineage
            for name, task in tasks.items()}
    gen = ICMLoRA(lab)
    gen.fit(runs, tasks, late=0.5, steps=400)          # the CVAE, through the one training loop
    new = gen.generate(tasks["arithmetic"], seed=0)    # an Adapter: evaluate, merge, save like any
    lab.evaluate([new, "arithmetic", None], tasks["arithmetic"])
    lab.save_adapter(new, "out/icm_arith")             # PEFT directory, lineage inside
    gen.save("out/icm"); gen = ICMLoRA.load(lab, "out/icm")   # the generator itself

One concept per file:

    flatten.py      adapter -> one vector, each tensor z-scored by its own (mean, std); exact inverse
    task_vector.py  the ICM-LoRA condition: the last decoder layer's last-position hidden state, averaged
    cvae.py         CVAE1D, the authors' 1-D convolutional conditional VAE (channels, latent as parameters)
    data.py         the training set: each task's late checkpoints, sorted by step as a number
    fitting.py      fit_cvae: the CVAE objective through ``workbench.training.Loop``
    icm_lora.py     ICMLoRA: fit, generate(task_examples), reconstruct(adapter), save / load
    text_encoder.py descriptions -> unit vectors: MiniLM from the zoo, or any encoder (name, dim, embed)
    sg_lora.py      SGLoRA: top-k softmax(cos/τ) proximity to expert descriptions -> dec(z, Σ w_i e_i)
    icm_fusion.py   ICMFusion: P(v_t) fused by learned weights (first-order MAML), one multi-task LoRA
    frames.py       tidy frames for views: proximity, the experts' map, per-tensor histograms, fusion PCA
    store.py        a fitted generator as safetensors + JSON (never pickle), read back with checks

SG-LoRA from words and ICM-Fusion of several tasks::

    sg = SGLoRA(lab)                                   # MiniLM description embeddings (pluggable encoder)
    sg.fit(checkpoints, {"topic_cf": "classify a quote as being about computers or food", ...})
    new = sg.generate("classify a quote as being about computers or sports", n=4, seed=0)
    fusion = ICMFusion(lab); fusion.fit(checkpoints, tasks); fusion.meta_fit(support)
    multi = fusion.fuse()                              # one multi-task LoRA

Reference: Shao et al., "In-Context Meta LoRA Generation" (ICM-LoRA), IJCAI 2025, arXiv 2501.17635
(authors' code YihuaJerry/ICM-LoRA); Li et al., SG-LoRA, arXiv 2509.10535 and Shao et al., ICM-Fusion,
AAAI 2026, arXiv 2508.04153 (no public code: labelled reconstructions); deviations are written in
each file.
"""

from workbench.generation.cvae import CVAE1D, kl_standard_normal
from workbench.generation.data import CheckpointSet, late_checkpoints, step_of
from workbench.generation.fitting import fit_cvae
from workbench.generation.flatten import Flat, Layout, flatten, layout_of, unflatten
from workbench.generation.icm_fusion import FusionVAE, ICMFusion
from workbench.generation.icm_lora import ICMLoRA
from workbench.generation.sg_lora import SGLoRA, proximity_weights, semantic_condition
from workbench.generation.task_vector import last_decoder_layer, task_vector
from workbench.generation.text_encoder import HashingEncoder, MiniLMEncoder, TextEncoder, encoder_named

__all__ = [
    "CVAE1D",
    "CheckpointSet",
    "Flat",
    "FusionVAE",
    "HashingEncoder",
    "ICMFusion",
    "ICMLoRA",
    "Layout",
    "MiniLMEncoder",
    "SGLoRA",
    "TextEncoder",
    "encoder_named",
    "fit_cvae",
    "flatten",
    "kl_standard_normal",
    "late_checkpoints",
    "proximity_weights",
    "semantic_condition",
    "last_decoder_layer",
    "layout_of",
    "step_of",
    "task_vector",
    "unflatten",
]
