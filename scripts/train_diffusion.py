"""Train the composition lab's diffusion model and judge, and measure token localisation (`make diffusion`).

    python scripts/train_diffusion.py                     # judge (if missing), SceneUNet, evaluation
    python scripts/train_diffusion.py --only eval         # evaluate the shipped weights again

Writes ``diffusion/judge.safetensors`` and ``diffusion/scene_unet.safetensors`` (atomically, with the
training record in their metadata) and ``results/diffusion.md`` / ``.csv``: the localisation score of
every object token (fraction of its cross-attention mass inside its item's half; 0.5 = no
localisation) over fixed test scenes and sampler seeds, and the judge's agreement with the captions.
Both models train through the workbench's one Loop (``ModuleLoss``). Run it at one thread.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd
import torch
from torch.nn import functional as F

from workbench.analysis.localisation import localisation
from workbench.tasks.multimodal.images import fashion_mnist
from workbench.tasks.scenes import SceneSet, caption_for, object_spans, side_spans
from workbench.training import Loop, Shuffled
from workbench.training.module_loss import ModuleLoss, training_session
from workbench.zoo import diffusion as D

ROOT = Path(__file__).resolve().parent.parent


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def train_judge(args) -> None:
    images, labels, _ = fashion_mnist("train")
    x = torch.from_numpy(images)[:, None] * 2 - 1  # (N, 1, 28, 28)
    y = torch.from_numpy(labels)
    judge = D.Judge()
    objective = ModuleLoss(judge, lambda ids: F.cross_entropy(judge(x[ids]), y[ids]))
    loop = Loop(list(judge.parameters()), objective, Shuffled([(0, i) for i in range(len(y))], seed=0),
                session=lambda: training_session(judge), label="judge", steps=args.judge_steps, lr=2e-3,
                batch_size=64, seed=0, warmup=0.05, progress=False)
    loop.run()
    timages, tlabels, _ = fashion_mnist("test")
    tx = torch.from_numpy(timages)[:, None] * 2 - 1
    judge.eval()
    with torch.no_grad():
        pred = torch.cat([judge(tx[i:i + 1000]).argmax(-1) for i in range(0, len(tx), 1000)])
    acc = (pred == torch.from_numpy(tlabels)).float().mean().item()
    log(f"judge: {sum(p.numel() for p in judge.parameters())} parameters, test accuracy {acc:.4f} "
        f"on 10,000 real test items ({loop.seconds:.0f} s)")
    D.save_model(judge, args.out / D.FILES["judge"],
                 extra={"test_accuracy": acc, "steps": args.judge_steps, "seconds": loop.seconds})


def text_table(text: D.CaptionText, scenes: SceneSet):
    enc = text.encode([*scenes.captions, ""])  # the last row: the empty caption (unconditional)
    return enc.states, enc.mask


def object_tokens(text, scenes: SceneSet, i: int, kind: str = "object") -> list[list[int]]:
    """Token positions of the left and the right item's name (``kind="object"``) or side word ("side")."""
    a, b = scenes.labels[i]
    caption = scenes.caption(i)
    names = scenes.names[a], scenes.names[b]
    spans = object_spans(caption, names) if kind == "object" else side_spans(caption)
    return [text.token_ids(caption, s) for s in spans]


def evaluate(model, text, states, mask, scenes: SceneSet, seeds, steps: int, judge=None,
             guidance: float = 1.0) -> pd.DataFrame:
    """Localisation per object token (and judge agreement) for every scene of ``scenes`` and seed.

    ``states``/``mask`` hold one row per caption of ``scenes.captions`` and the empty caption last.
    """
    batch = scenes.batch(range(len(scenes)))
    uncond = (states[-1:], mask[-1:])
    rows = []
    for seed in seeds:
        images, maps = D.sample_with_attention(model, states[batch.caption_ids], mask[batch.caption_ids],
                                               steps=steps, seed=seed, guidance=guidance, uncond=uncond)
        # maps: (B, steps, T, 7, 14)
        pred = judge.regions(images) if judge is not None else None
        for i in range(len(scenes)):
            scores = localisation(maps[i], object_tokens(text, scenes, i), batch.regions[i])
            sides = localisation(maps[i], object_tokens(text, scenes, i, "side"), batch.regions[i])
            for o, side in enumerate(("left", "right")):
                c = int(batch.labels[i, o])
                rows.append({"seed": seed, "scene": i, "side": side, "token": scenes.names[c],
                             "localisation": float(scores[o]), "side_word_localisation": float(sides[o]),
                             "judge_agrees": None if pred is None else bool(pred[i, o] == c)})
    return pd.DataFrame(rows)


@torch.no_grad()
def caption_use(model, scenes: SceneSet, states, mask, timesteps=(200, 500, 800),
                seed: int = 0) -> pd.DataFrame:
    """Denoising error with the true caption, the caption with the two items' sides swapped, and none.

    A model that binds each item to its side predicts the noise better with the true caption than
    with the swapped one; one that ignores the caption scores all three alike. Same noise for all three.
    """
    batch = scenes.batch(range(len(scenes)))
    names = scenes.names
    swapped = torch.tensor([scenes.caption_index[caption_for(names[b], names[a], bool(scenes.right_first[i]))]
                            for i, (a, b) in enumerate(scenes.labels)])
    empty = torch.full_like(swapped, states.shape[0] - 1)
    sched, g, rows = D.noise_schedule(), torch.Generator().manual_seed(seed), []
    for t in timesteps:
        noise = torch.randn(batch.images.shape, generator=g)
        tt = torch.full((len(scenes),), t)
        x = sched.add_noise(batch.images, noise, tt)
        for name, cid in (("caption", batch.caption_ids), ("sides swapped", swapped), ("empty", empty)):
            err = F.mse_loss(model(x, tt, states[cid], mask[cid]), noise).item()
            rows.append({"t": t, "condition": name, "mse": err})
    return pd.DataFrame(rows)


def train_unet(args, text) -> None:
    scenes = SceneSet("train", n=60_000, seed=0)
    states, mask = text_table(text, scenes)
    uncond = len(scenes.captions)
    model = D.SceneUNet(D.SceneUNet.CONFIGS[args.config])
    log(f"SceneUNet[{args.config}]: {model.n_parameters():,} parameters; "
        f"{args.steps} steps of {args.batch_size}")
    sched = D.noise_schedule()

    def loss_fn(ids):
        b = scenes.batch(ids)
        cid = torch.where(torch.rand(len(ids)) < args.p_uncond, uncond, b.caption_ids)  # CFG dropout
        return D.denoising_loss(model, b.images, states[cid], mask[cid], sched)

    loop = Loop(list(model.parameters()), ModuleLoss(model, loss_fn),
                Shuffled([(0, i) for i in range(len(scenes))], seed=0),
                session=lambda: training_session(model), label="scene-unet", steps=args.steps, lr=args.lr,
                batch_size=args.batch_size, seed=0, warmup=0.05, progress=False)
    probe = SceneSet("test", n=8, seed=1)
    pstates, pmask = text_table(text, probe)
    start, last = time.time(), None
    while not loop.done:
        loop.run(args.eval_every)
        hist = loop.history()
        model.eval()
        quick = evaluate(model, text, pstates, pmask, probe, [0], steps=10)
        last = float(quick.localisation.mean())
        log(f"step {loop.step_index}: loss {hist.loss.tail(args.eval_every).mean():.4f}, quick localisation "
            f"{last:.3f} (side words {quick.side_word_localisation.mean():.3f}), "
            f"{(time.time() - start) / 60:.1f} min")
        extra = {"steps": loop.step_index, "planned_steps": args.steps, "batch_size": args.batch_size,
                 "lr": args.lr, "minutes": (time.time() - start) / 60, "quick_localisation": last,
                 "loss": float(hist.loss.tail(args.eval_every).mean())}
        D.save_model(model, args.out / D.FILES["unet"], extra=extra)
        if (time.time() - start) / 60 > args.max_minutes and not loop.done:
            log(f"stopping at step {loop.step_index}: over the {args.max_minutes} min budget")
            break


def write_results(frame: pd.DataFrame, model, judge, info: dict, jinfo: dict, args,
                  use: pd.DataFrame | None = None) -> None:
    out, nan = ROOT / "results", float("nan")
    out.mkdir(exist_ok=True)
    frame.to_csv(out / "diffusion.csv", index=False)
    per_seed = frame.groupby("seed").localisation.mean()
    m, s = per_seed.mean(), per_seed.std(ddof=1) if len(per_seed) > 1 else float("nan")
    lines = ["# SceneUNet: token localisation and judge agreement", "",
             f"- SceneUNet[{args.config}]: {model.n_parameters():,} parameters, {info.get('steps')} steps "
             f"of {info.get('batch_size')}, {info.get('minutes', nan):.1f} min at 1 thread, "
             f"final loss {info.get('loss', nan):.4f}",
             f"- judge: {sum(p.numel() for p in judge.parameters()):,} parameters, test accuracy "
             f"{jinfo.get('test_accuracy', nan):.4f} on 10,000 real Fashion-MNIST items",
             f"- evaluation: {frame.scene.nunique()} test scenes × seeds {sorted(set(args.seeds))}, "
             f"DDIM {args.sample_steps} steps, guidance {args.guidance:g}", "",
             f"**Localisation** (fraction of each object token's cross-attention mass in its item's half; "
             f"0.5 = none): mean {m:.3f} (sd over seeds {s:.3f}); by seed "
             + ", ".join(f"{k}: {v:.3f}" for k, v in per_seed.items())
             + f". The side words (\"left\", \"right\") score {frame.side_word_localisation.mean():.3f}.", "",
             "| side | object token | side word | judge agrees |", "|---|---|---|---|"]
    for side, g in frame.groupby("side"):
        lines.append(f"| {side} | {g.localisation.mean():.3f} | {g.side_word_localisation.mean():.3f} "
                     f"| {g.judge_agrees.mean():.3f} |")
    lines += ["", "| token | localisation | judge agrees | n |", "|---|---|---|---|"]
    for tok, g in frame.groupby("token"):
        lines.append(f"| {tok} | {g.localisation.mean():.3f} | {g.judge_agrees.mean():.3f} | {len(g)} |")
    if use is not None:
        table = use.pivot(index="t", columns="condition", values="mse")
        lines += ["", "Denoising error (MSE of the predicted noise, same noise) with the true caption, "
                  "the caption with the items' sides swapped, and the empty caption:", "",
                  "| t | caption | sides swapped | empty |", "|---|---|---|---|"]
        lines += [f"| {t} | {r['caption']:.4f} | {r['sides swapped']:.4f} | {r['empty']:.4f} |"
                  for t, r in table.iterrows()]
    lines += ["", f"Command: `{' '.join(['python scripts/train_diffusion.py', *args.argv])}`"]
    (out / "diffusion.md").write_text("\n".join(lines) + "\n")
    log("\n".join(lines))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", choices=["judge", "unet", "eval"], default=None)
    p.add_argument("--config", default="base", choices=sorted(D.SceneUNet.CONFIGS))
    p.add_argument("--steps", type=int, default=800)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--p-uncond", type=float, default=0.1)
    p.add_argument("--max-minutes", type=float, default=22.0)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--judge-steps", type=int, default=600)
    p.add_argument("--eval-scenes", type=int, default=32)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--sample-steps", type=int, default=20)
    p.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance in the evaluation")
    p.add_argument("--out", type=Path, default=D.shipped_dir())
    args = p.parse_args(argv)
    import sys
    args.argv = list(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(1)
    if args.only in (None, "judge") and (args.only == "judge" or not (args.out / D.FILES["judge"]).exists()):
        train_judge(args)
    text = D.CaptionText.from_zoo()
    if args.only in (None, "unet"):
        train_unet(args, text)
    if args.only in (None, "eval"):
        model, info = D.load_shipped("unet", args.out)
        judge, jinfo = D.load_shipped("judge", args.out)
        scenes = SceneSet("test", n=args.eval_scenes, seed=1)
        states, mask = text_table(text, scenes)
        frame = evaluate(model, text, states, mask, scenes, args.seeds, args.sample_steps, judge,
                         args.guidance)
        use = caption_use(model, SceneSet("test", n=64, seed=2), *text_table(text, scenes))
        write_results(frame, model, judge, info, jinfo, args, use)
        print(json.dumps({"localisation": float(frame.localisation.mean())}))


if __name__ == "__main__":
    main()
