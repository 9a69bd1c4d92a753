"""A short, stable hash that identifies the *base* weights of a model.

Two loads of the same weights give the same fingerprint; changing a tensor's name, shape, dtype or
any of its sampled values changes it. Wrapping modules in adapter layers does not change it: the
segment ``base_layer.`` is dropped from names and a wrapper's own tensors (its adapter factors) are
left out, so ``fingerprint(wrapped) == fingerprint(unwrapped)``. Adapters record the fingerprint of
the model they were trained on, and refuse to attach to another one.
"""

from __future__ import annotations

import hashlib

import torch

SAMPLES = 4096  # values hashed per tensor; smaller tensors are hashed whole
WRAPPED = "base_layer"  # attribute under which an adapter layer keeps the module it wraps
PEFT_PREFIX = "base_model.model."  # what peft's PeftModel puts before every name


def fingerprint(model: torch.nn.Module) -> str:
    """Hash the base weights of ``model`` into ``"sha256:" + 16 hex digits``.

    The hash covers the sorted state-dict names (parameters and persistent buffers), each tensor's
    shape and dtype, and up to ``SAMPLES`` evenly spaced values of the flattened tensor. It takes
    a few milliseconds on SmolLM2-135M. Limitation: a change confined to values that fall between
    the samples of a large tensor goes unnoticed; any training or merge touches sampled values.

    Args:
        model: any module; adapter-wrapped modules (``x.base_layer.weight``) hash as ``x.weight``.

    Returns:
        A string such as ``"sha256:3f1c0a9be2d47a10"``.
    """
    digest = hashlib.sha256()
    for name, tensor in base_state(model):
        digest.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype}\n".encode())
        digest.update(_sample_bytes(tensor))
    return "sha256:" + digest.hexdigest()[:16]


def base_state(model: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    """The base model's (name, tensor) pairs, sorted by name, with adapter wrapping undone.

    Args:
        model: a module, possibly with adapter layers or inside a peft ``PeftModel``.

    Returns:
        Pairs sorted by their base name (``...q_proj.weight`` for ``...q_proj.base_layer.weight``).
    """
    state = model.state_dict()
    names = list(state)
    if names and all(n.startswith(PEFT_PREFIX) for n in names):
        state = {n[len(PEFT_PREFIX) :]: t for n, t in state.items()}
        names = list(state)
    # A module holding a ``base_layer`` is a wrapper: only its base_layer's tensors are base ones.
    wrappers = {_wrapper_prefix(n) for n in names if f".{WRAPPED}." in f".{n}"}
    pairs = []
    for name in names:
        if any(name.startswith(w) and not name.startswith(w + WRAPPED + ".") for w in wrappers):
            continue  # an adapter's own tensor (lora_A, lora_B, router, ...)
        base = ".".join(part for part in name.split(".") if part != WRAPPED)
        pairs.append((base, name, state[name]))
    pairs.sort(key=lambda p: (p[0], p[1]))
    return [(base, tensor) for base, _, tensor in pairs]


def _wrapper_prefix(name: str) -> str:
    """``"a.q_proj.base_layer.weight"`` -> ``"a.q_proj."`` (``""`` when the root is wrapped)."""
    parts = name.split(".")
    return "".join(p + "." for p in parts[: parts.index(WRAPPED)])


def _sample_bytes(tensor: torch.Tensor) -> bytes:
    """Up to ``SAMPLES`` evenly spaced values of the flattened tensor, as bytes.

    Floating tensors are sampled as float32, others as int64, so the bytes do not depend on the
    device. Indices are integer arithmetic, hence identical on every machine.
    """
    flat = tensor.detach().reshape(-1)  # (n,)
    n = flat.numel()
    if n > SAMPLES:
        index = torch.arange(SAMPLES, dtype=torch.int64, device=flat.device) * (n - 1)
        flat = flat[index // (SAMPLES - 1)]  # (SAMPLES,), first and last element included
    if flat.is_complex():
        flat = torch.view_as_real(flat)
    kind = torch.float32 if flat.is_floating_point() or flat.is_complex() else torch.int64
    return flat.to(device="cpu", dtype=kind).contiguous().numpy().tobytes()
