"""Check (issue 22): why the shipped SceneUNet's caption tokens do not localise (results/caption_check.md).

    /work/wt/realrun.sh python scripts/check_caption_attention.py --steps 200 --arms plain norm_cross box_loss

Diagnosis this checks: in the shipped SceneUNet the cross-attention logits are still at their init
scale (keys of norm ~1.5 after text_proj, W_q/W_k within 10% of their init norm), so every query's
softmax over the caption is within 1% of uniform entropy and the attention output is the caption's mean
value vector, the same at every position: no localisation. Two arms continue training the shipped
weights for the same steps and data: ``plain`` (as shipped) and ``norm_cross`` (a LayerNorm on the
projected caption states in every attn2, diffusers' ``cross_attention_norm="layer_norm"``: keys of norm
~√d, logits several times larger). A third arm, ``box_loss``, adds to the denoising loss the
composition lab's ``box_attention_loss`` of each object word's cross-attention against its item's half
(supervising localisation directly, as the scenes know where each item is). Reported per arm:
cross-attention entropy against uniform and the
localisation score (0.5: none) on probe test scenes. Run at one thread through the slot script.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

import torch
from torch import nn

from workbench.composition.attention import AttentionPlan, planned
from workbench.composition.losses import box_attention_loss
from workbench.composition.sampling import layer_mean
from workbench.tasks.scenes import SceneSet
from workbench.training import Loop, Shuffled
from workbench.training.module_loss import ModuleLoss, training_session
from workbench.zoo import diffusion as D

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("train_diffusion", ROOT / "scripts" / "train_diffusion.py")
TD = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(TD)


@torch.no_grad()
def entropy_gap(model, states, mask, scenes: SceneSet, t: int = 500) -> float:
    """Mean over attn2 calls of (uniform entropy − attention entropy) / uniform entropy, at timestep t."""
    b = scenes.batch(range(len(scenes)))
    noise = torch.randn(b.images.shape, generator=torch.Generator().manual_seed(0))
    x = D.noise_schedule().add_noise(b.images, noise, torch.full((len(scenes),), t))
    with D.capture_cross_attention(model) as rec:
        model(x, torch.full((len(scenes),), t), states[b.caption_ids], mask[b.caption_ids])
    m = mask[b.caption_ids]
    uni = torch.log(m.sum(1).float())  # (B,)
    gaps = [float(((uni + (p.clamp_min(1e-12).log() * p).sum(-1).mean(1)) / uni).mean()) for p in rec.calls]
    return sum(gaps) / len(gaps)


@torch.no_grad()
def real_localisation(model, text, states, mask, scenes: SceneSet, t: int = 500) -> float:
    """Localisation of the object words on real noisy test scenes at timestep t (not on samples)."""
    from workbench.analysis.localisation import localisation

    b = scenes.batch(range(len(scenes)))
    noise = torch.randn(b.images.shape, generator=torch.Generator().manual_seed(0))
    x = D.noise_schedule().add_noise(b.images, noise, torch.full((len(scenes),), t))
    with D.capture_cross_attention(model) as rec:
        model(x, torch.full((len(scenes),), t), states[b.caption_ids], mask[b.caption_ids])
    maps = rec.maps(steps=1, grid=model.grid)  # (B, 1, T, h, w)
    return float(torch.stack([localisation(maps[i], TD.object_tokens(text, scenes, i), b.regions[i])
                              for i in range(len(scenes))]).mean())


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--arms", nargs="+", default=["plain", "norm_cross"],
                   choices=["plain", "norm_cross", "box_loss"])
    p.add_argument("--box-weight", type=float, default=1.0, help="box_loss arm: weight of the attention loss")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    text = D.CaptionText.from_zoo()
    scenes = SceneSet("train", n=60_000, seed=3)
    states, mask = TD.text_table(text, scenes)
    uncond = len(scenes.captions)
    probe = SceneSet("test", n=8, seed=1)
    for arm in args.arms:
        torch.manual_seed(0)
        model, _ = D.load_shipped("unet")
        if arm == "norm_cross":
            for name, mod in model.named_modules():
                if name.endswith("attn2"):
                    mod.norm_cross = nn.LayerNorm(mod.to_k.in_features)
        before = entropy_gap(model, states, mask, probe)

        def loss_fn(ids, model=model, arm=arm):
            b = scenes.batch(ids)
            cid = torch.where(torch.rand(len(ids)) < 0.1, uncond, b.caption_ids)
            if arm != "box_loss":
                return D.denoising_loss(model, b.images, states[cid], mask[cid])
            calls: list = []
            with planned(model, AttentionPlan(model.grid, record=calls)):
                loss = D.denoising_loss(model, b.images, states[cid], mask[cid])
            maps = layer_mean(calls, model.grid)  # (B, T, 7, 14)
            halves = torch.zeros(2, *maps.shape[-2:])
            halves[0, :, : maps.shape[-1] // 2] = 1
            halves[1] = 1 - halves[0]
            rows = [k for k in range(len(ids)) if int(cid[k]) != uncond]
            aux = torch.stack([box_attention_loss(maps[k:k + 1], TD.object_tokens(text, scenes, ids[k]),
                                                  halves) for k in rows]).mean() if rows else loss * 0
            return loss + args.box_weight * aux

        start = time.time()
        loop = Loop(list(model.parameters()), ModuleLoss(model, loss_fn),
                    Shuffled([(0, i) for i in range(len(scenes))], seed=0),
                    session=lambda model=model: training_session(model), label=f"check-{arm}",
                    steps=args.steps, lr=args.lr, batch_size=args.batch_size, seed=0, warmup=0.05,
                    progress=False)
        loop.run()
        model.eval().requires_grad_(False)
        after = entropy_gap(model, states, mask, probe)
        frame = TD.evaluate(model, text, *TD.text_table(text, probe), probe, [0], steps=10)
        loss = float(loop.history().loss.tail(50).mean())
        real = real_localisation(model, text, *TD.text_table(text, probe), probe)
        print(f"{arm}: {args.steps} steps of {args.batch_size} in {(time.time() - start) / 60:.1f} min, "
              f"loss {loss:.4f}; attention entropy below uniform {before:.3%} -> {after:.3%}; "
              f"localisation {frame.localisation.mean():.3f} (side words "
              f"{frame.side_word_localisation.mean():.3f}); on real noisy scenes at t=500 {real:.3f}",
              flush=True)


if __name__ == "__main__":
    main()
