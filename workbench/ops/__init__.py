"""Small tensor and frame operations shared by merging and analysis (no adapters, no models).

    ops.sparsify   elementwise trims, sign election, disjoint means (TIES, DARE, DELLA, ...)
    ops.lowrank    exact SVD of a sum of low-rank updates, truncation, factored norms
    ops.frames     rows -> tidy DataFrame
"""
