"""Views of LoRA Workbench: they take plain data (frames computed by ``workbench``) and render it.

No tensor math lives here. Static plotly figures: ``score_bars``, ``loss_curve``, ``Spectrum``,
``SubspaceView``. Live widgets (anywidget): ``AngleMatrix``, ``InterferenceMap`` (geometry);
``RankActivations``, ``ExpertLoad``, ``TokenRouting``, ``PromptWhatIf`` (routing); ``MergeBuilder``
(merging); ``ModalityMap``, ``QLadderAttention``, ``PromptScaleExplorer`` (multimodal);
``TrainingMonitor``, ``ConflictMonitor`` (training, live) and ``sweep_heatmap``; ``SearchProgress`` (a
merge-weight search, live).
"""

from importlib import import_module

# name -> the module that defines it; imported on first use, so that ``widgets.merge_model`` (plain
# Python) can be used without loading anywidget, ipywidgets or plotly.
_WHERE = {
    "AngleMatrix": "angle_matrix",
    "ConflictMonitor": "conflict_monitor",
    "ExpertLoad": "expert_load",
    "InterferenceMap": "interference_map",
    "MergeBuilder": "merge_builder",
    "MergeModel": "merge_model",
    "ModalityMap": "modality_map",
    "PromptScaleExplorer": "prompt_scale_explorer",
    "PromptWhatIf": "prompt_what_if",
    "QLadderAttention": "qladder_attention",
    "RankActivations": "rank_activations",
    "SearchProgress": "search_progress",
    "ScaleScatter": "prompt_scale_explorer",
    "Spectrum": "spectrum",
    "SubspaceView": "subspaces",
    "TokenRouting": "token_routing",
    "TrainingMonitor": "training_monitor",
    "gradient_gap_figure": "gradient_gap",
    "loss_curve": "scores",
    "score_bars": "scores",
    "sweep_heatmap": "training_monitor",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'widgets' has no attribute {name!r}; it has: {', '.join(__all__)}")
    value = getattr(import_module(f"widgets.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
