"""Views of LoRA Workbench: they take plain data (frames computed by ``workbench``) and render it.

No tensor math lives here. Static plotly figures: ``score_bars``, ``loss_curve``, ``Spectrum``,
``SubspaceView``. Live widgets (anywidget): ``AngleMatrix``, ``InterferenceMap`` (geometry);
``RankActivations``, ``ExpertLoad``, ``TokenRouting``, ``PromptWhatIf`` (routing); ``SMoRAGates``,
``TypeImportance``, ``TaskLoad``, ``HeadMaps``, ``LeakageMap``, ``UserMixtureMap``, ``RankReuseMap``,
``RewardMixture`` (the mechanism views of the route lab); ``MergeBuilder``
(merging); ``ModalityMap``, ``QLadderAttention``, ``PromptScaleExplorer`` (multimodal);
``TrainingMonitor``, ``ConflictMonitor`` (training, live) and ``sweep_heatmap``; ``SearchProgress`` (a
merge-weight search, live); ``GeneratorPanel`` (generation, live), ``proximity_bars``,
``expert_map_figure``, ``histogram_figure``, ``fusion_pca_figure``; ``serving_figure`` (a serving
run of mixed-adapter batches).
"""

from importlib import import_module

# name -> the module that defines it; imported on first use, so that ``widgets.merge_model`` (plain
# Python) can be used without loading anywidget, ipywidgets or plotly.
_WHERE = {
    "AngleMatrix": "angle_matrix",
    "ConflictMonitor": "conflict_monitor",
    "ExpertLoad": "expert_load",
    "GeneratorPanel": "generator_panel",
    "HeadMaps": "head_maps",
    "InterferenceMap": "interference_map",
    "LeakageMap": "leakage_map",
    "MergeBuilder": "merge_builder",
    "MergeModel": "merge_model",
    "ModalityMap": "modality_map",
    "PromptScaleExplorer": "prompt_scale_explorer",
    "PromptWhatIf": "prompt_what_if",
    "QLadderAttention": "qladder_attention",
    "RankActivations": "rank_activations",
    "RankReuseMap": "rank_reuse",
    "RewardMixture": "reward_mixture",
    "SMoRAGates": "smora_gates",
    "SearchProgress": "search_progress",
    "ScaleScatter": "prompt_scale_explorer",
    "Spectrum": "spectrum",
    "SubspaceView": "subspaces",
    "TaskLoad": "task_load",
    "TokenRouting": "token_routing",
    "TrainingMonitor": "training_monitor",
    "TypeImportance": "type_importance",
    "UserMixtureMap": "user_mixture_map",
    "expert_map_figure": "generation_figures",
    "fusion_pca_figure": "generation_figures",
    "gradient_gap_figure": "gradient_gap",
    "histogram_figure": "generation_figures",
    "loss_curve": "scores",
    "proximity_bars": "generation_figures",
    "score_bars": "scores",
    "serving_figure": "serving_figures",
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
