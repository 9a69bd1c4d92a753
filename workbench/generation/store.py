"""Saving and loading a fitted generator: safetensors for tensors, JSON for the rest, never pickle.

    gen.save("out/icm")                       # a new folder: generator.json + generator.safetensors
    gen = ICMLoRA.load(lab, "out/icm")        # the same generator, for a lab on the same base

``generator.safetensors`` holds the CVAE's state (``cvae.<name>``), the fitted tasks' raw conditions
(``conditions``, (T, H)) and each task's de-normalization stats (``stats.<i>``, (K, 2)).
``generator.json`` holds the format tag, the CVAE's configuration, the layout, the task names, the
condition layer and scale (the centre is the conditions' mean), and how it was fitted. The
folder is written beside its final place and renamed into it (``adapters.files.atomic_directory``),
so a kill leaves no half folder; a folder that exists is refused. Reading checks every piece
(missing files, another format, a layout for another base, shapes, non-finite values) and names
the problem.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from workbench.adapters.files import atomic_directory, read_safetensors
from workbench.errors import WorkbenchError
from workbench.generation.flatten import Layout

FORMAT = "lora-workbench/generator"
VERSION = 1
CONFIG, WEIGHTS = "generator.json", "generator.safetensors"


def save_generator(gen, path) -> Path:
    """Write a fitted generator (``ICMLoRA``, ``SGLoRA``, ``ICMFusion``) to the new folder ``path``."""
    vae = gen._fitted()
    path = Path(path)
    if path.exists() or path.is_symlink():
        raise WorkbenchError(f"{path} already exists; a generator is saved to a new folder: choose "
                             "another path")
    tensors = {f"cvae.{k}": v.detach().cpu().contiguous() for k, v in vae.state_dict().items()}
    tensors["conditions"] = gen.conditions.contiguous()
    tensors |= {f"stats.{i}": gen.stats[t].contiguous() for i, t in enumerate(gen.tasks)}
    extra = {f"extra.{k}": v.detach().cpu().contiguous() for k, v in gen.extra_tensors().items()}
    tensors |= extra
    config = {"format": FORMAT, "version": VERSION, "generator": gen.name, "cvae": vae.config(),
              "layout": gen.layout.to_dict(), "tasks": list(gen.tasks), "layer": gen.layer,
              "condition_scale": gen.scale, "options": gen.options, "fit": gen.fit_options,
              "extra": gen.extra_config()}
    with atomic_directory(path) as tmp:
        save_file(tensors, str(tmp / WEIGHTS))
        (tmp / CONFIG).write_text(json.dumps(config, indent=2), encoding="utf-8")
    return path


def _layout(d: dict) -> Layout:
    try:
        dtype = getattr(torch, d["dtype"])
        if not isinstance(dtype, torch.dtype):
            raise AttributeError(d["dtype"])
        return Layout(tuple(d["modules"]), tuple((tuple(a), tuple(b)) for a, b in d["shapes"]),
                      tuple(float(a) for a in d["alphas"]), d["scaling"], d.get("base_fingerprint"), dtype)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise WorkbenchError(f"the generator's layout is malformed ({type(e).__name__}: {e}); save it again "
                             "from a fitted generator") from None


def load_generator(cls, lab, path, **kwargs):
    """Read a folder written by ``save_generator`` into a new ``cls(lab, **kwargs)``.

    ``cls`` is ``ICMLoRA``, ``SGLoRA`` or ``ICMFusion``: the folder must hold a generator of that kind.
    """
    path = Path(path)
    file = path / CONFIG
    if not file.is_file():
        raise WorkbenchError(f"{path} holds no {CONFIG}; give a folder written by gen.save(...)")
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WorkbenchError(f"{file} is not valid JSON ({e}); it may be truncated: save it again") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise WorkbenchError(f"{file} is not a workbench generator (format {FORMAT!r} expected)")
    if config.get("version") != VERSION:
        raise WorkbenchError(f"{file} has version {config.get('version')}; this workbench reads {VERSION}")
    if config.get("generator") != cls.name:
        raise WorkbenchError(f"{file} holds a {config.get('generator')!r} generator, not {cls.name!r}; load "
                             "it with that generator's class (ICMLoRA, SGLoRA or ICMFusion)")
    layout = _layout(config.get("layout") or {})
    if layout.base_fingerprint not in (None, lab.fingerprint):
        raise WorkbenchError(f"this generator was fitted on a base with fingerprint "
                             f"{layout.base_fingerprint}, but this lab's base ({lab.name}) is "
                             f"{lab.fingerprint}; load it on its own base")
    tensors = read_safetensors(path / WEIGHTS)
    tasks = list(config.get("tasks") or [])
    try:
        vae = cls.vae_from_config(config["cvae"])
        state = {k.removeprefix("cvae."): v for k, v in tensors.items() if k.startswith("cvae.")}
        vae.load_state_dict(state, strict=True)
        conditions = tensors["conditions"]
        stats = {t: tensors[f"stats.{i}"] for i, t in enumerate(tasks)}
    except (KeyError, TypeError, RuntimeError) as e:
        raise WorkbenchError(f"{path} does not hold a whole generator ({type(e).__name__}: {e}); save it "
                             "again from a fitted generator") from None
    if vae.length != layout.length or conditions.shape != (len(tasks), vae.cond_dim) or any(
            s.shape != (layout.n_tensors, 2) for s in stats.values()):
        raise WorkbenchError(f"{path}: the CVAE, conditions and stats disagree with the layout or tasks; "
                             "save it again from a fitted generator")
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise WorkbenchError(f"{path}: {bad[:3]} hold non-finite values; the generator cannot be used")
    gen = cls(lab, layer=config.get("layer"), **kwargs,
              **{k: v for k, v in (config.get("options") or {}).items()
                 if k in ("channels", "latent", "kernel", "kl_weight", "slice_length")})
    gen.vae, gen.tasks, gen.layout, gen.stats = vae.eval(), tasks, layout, stats
    gen.conditions, gen.scale = conditions.float(), float(config.get("condition_scale", 1.0))
    gen.fit_options = config.get("fit") or {}
    extra = config.get("extra") or {}
    if not isinstance(extra, dict):
        raise WorkbenchError(f"{file}: 'extra' must be an object; save it again from a fitted generator")
    gen.restore_extra(extra, {k.removeprefix("extra."): v for k, v in tensors.items()
                              if k.startswith("extra.")})
    return gen
