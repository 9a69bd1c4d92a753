"""Views of LoRA Workbench: they take plain data (frames computed by ``workbench``) and render it.

No tensor math lives here. Static plotly figures: ``score_bars``, ``loss_curve``, ``Spectrum``,
``SubspaceView``. Live widgets (anywidget): ``AngleMatrix``, ``InterferenceMap`` (geometry);
``RankActivations``, ``ExpertLoad``, ``TokenRouting``, ``PromptWhatIf`` (routing); ``MergeBuilder``
(merging); ``ModalityMap``, ``QLadderAttention``, ``PromptScaleExplorer`` (multimodal);
``TrainingMonitor``, ``ConflictMonitor`` (training, live) and ``sweep_heatmap``.
"""

from widgets.angle_matrix import AngleMatrix
from widgets.conflict_monitor import ConflictMonitor
from widgets.expert_load import ExpertLoad
from widgets.interference_map import InterferenceMap
from widgets.merge_builder import MergeBuilder
from widgets.modality_map import ModalityMap
from widgets.prompt_scale_explorer import PromptScaleExplorer, ScaleScatter
from widgets.prompt_what_if import PromptWhatIf
from widgets.qladder_attention import QLadderAttention
from widgets.rank_activations import RankActivations
from widgets.scores import loss_curve, score_bars
from widgets.spectrum import Spectrum
from widgets.subspaces import SubspaceView
from widgets.token_routing import TokenRouting
from widgets.training_monitor import TrainingMonitor, sweep_heatmap

__all__ = [
    "AngleMatrix",
    "ConflictMonitor",
    "ExpertLoad",
    "InterferenceMap",
    "MergeBuilder",
    "ModalityMap",
    "PromptScaleExplorer",
    "PromptWhatIf",
    "QLadderAttention",
    "RankActivations",
    "ScaleScatter",
    "Spectrum",
    "SubspaceView",
    "TokenRouting",
    "TrainingMonitor",
    "loss_curve",
    "score_bars",
    "sweep_heatmap",
]
