"""Pure metrics on adapters -> tidy DataFrames: task-vector angles, spectra, subspaces, interference.

Geometry is computed from the factors (A, s·B), never from a dense ΔW, and depends on the
update only, not on how it is split into A and B::

    from workbench import analysis
    analysis.angles(lab.adapters)                 # adapter_a, adapter_b, cosine, angle_deg, ...
    analysis.angles(lab.adapters, by="module")    # per layer and module
    analysis.effective_rank(analysis.spectrum(lab.adapters["arith"]))
    analysis.subspaces(lab.adapters)              # column / row space overlap per module
    analysis.interference(lab.adapters, density=0.2)  # TIES-trim sign conflicts per module (dense,
                                                      # one module at a time: elementwise work)
    analysis.observe(lab, "smora", analysis.task_prompts(lab, ["arithmetic", "topic"]))  # routing
"""

from workbench.analysis.angles import angles, flattened_factor_cosine
from workbench.analysis.interference import interference, trim_mask
from workbench.analysis.observe import Observation, observe, task_prompts
from workbench.analysis.output_interference import output_interference
from workbench.analysis.reparametrize import reparametrize
from workbench.analysis.spectrum import effective_rank, spectrum
from workbench.analysis.subspaces import subspaces
from workbench.analysis.variance import between_share

__all__ = [
    "Observation",
    "angles",
    "between_share",
    "effective_rank",
    "flattened_factor_cosine",
    "interference",
    "observe",
    "output_interference",
    "reparametrize",
    "spectrum",
    "subspaces",
    "task_prompts",
    "trim_mask",
]
