"""Planted merge statistics for the invariant tests: a random SPD Gram and a positive Fisher per source
and module (regmean and fisher read them; tests/merging/test_data_methods.py computes real ones)."""

from __future__ import annotations

import zlib

import torch

from workbench.merging.statistics import MergeStatistics


def planted_statistics(adapters, seed: int = 0) -> MergeStatistics:
    grams, fishers = {}, {}
    for a in adapters:  # each source's own generator: the same tensors whatever the other sources
        g = torch.Generator().manual_seed(seed * 1000 + zlib.crc32(a.name.encode()))
        grams[a.name], fishers[a.name] = {}, {}
        for path, f in a.modules.items():
            X = torch.randn(3 * f.in_features, f.in_features, generator=g, dtype=torch.float64)
            grams[a.name][path] = X.T @ X / X.shape[0]  # (in, in), SPD
            fishers[a.name][path] = torch.rand(f.out_features, f.in_features, generator=g,
                                               dtype=torch.float64) + 0.1  # (out, in) > 0
    return MergeStatistics.planted(adapters, grams=grams, fishers=fishers)
