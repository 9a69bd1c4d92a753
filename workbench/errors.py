"""The one exception family of the engine: every message names the thing, the problem and the fix."""


class WorkbenchError(ValueError):
    """Bad input to the workbench (a file, a shape, a name). Subclasses ValueError for callers' ease."""


class MissingPackageError(WorkbenchError, ImportError):
    """A zoo model or data set needs a package that is not installed; the message gives the command."""


class UnknownNameError(WorkbenchError, KeyError):
    """A name that is not registered (a method, task, model ...); the message lists the registered ones.

    A ``KeyError`` too, so lookups keep their usual contract; ``str()`` is the plain message (a bare
    ``KeyError`` would quote it).
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""
