"""Views of LoRA Workbench: they take plain data (frames computed by ``workbench``) and render it.

No tensor math lives here. Static plotly figures: ``score_bars``, ``loss_curve``, ``Spectrum``,
``SubspaceView``. Live widgets (anywidget): ``AngleMatrix``, ``InterferenceMap`` (geometry);
``RankActivations``, ``ExpertLoad``, ``TokenRouting``, ``PromptWhatIf`` (routing).
"""

from widgets.angle_matrix import AngleMatrix
from widgets.expert_load import ExpertLoad
from widgets.interference_map import InterferenceMap
from widgets.prompt_what_if import PromptWhatIf
from widgets.rank_activations import RankActivations
from widgets.scores import loss_curve, score_bars
from widgets.spectrum import Spectrum
from widgets.subspaces import SubspaceView
from widgets.token_routing import TokenRouting

__all__ = [
    "AngleMatrix",
    "ExpertLoad",
    "InterferenceMap",
    "PromptWhatIf",
    "RankActivations",
    "Spectrum",
    "SubspaceView",
    "TokenRouting",
    "loss_curve",
    "score_bars",
]
