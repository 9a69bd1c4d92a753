"""Views of LoRA Workbench: they take plain data (frames computed by ``workbench``) and render it.

No tensor math lives here; interactive widgets (anywidget) join as later issues land.
"""

from widgets.scores import loss_curve, score_bars

__all__ = ["loss_curve", "score_bars"]
