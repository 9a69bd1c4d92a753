"""Multi-task gradient methods, one per file, behind ``GRAD_METHODS`` (found by its package scan).

Each method is a class built as ``GRAD_METHODS.get(name)(**options)`` whose ``combine(grads)`` maps
the (T, D) task gradients of one step (rows already carry the task weights) to the (D,) update. The
plain ``sum`` gives their sum; the others change the rows first. Stateful methods (GradVac's targets)
keep their state on the object, so one object serves one training run.
"""

from workbench.training.grad_method import GRAD_METHODS, GradMethod

__all__ = ["GRAD_METHODS", "GradMethod"]
