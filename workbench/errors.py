"""The one exception family of the engine: every message names the thing, the problem and the fix."""


class WorkbenchError(ValueError):
    """Bad input to the workbench (a file, a shape, a name). Subclasses ValueError for callers' ease."""


class MissingPackageError(WorkbenchError, ImportError):
    """A zoo model or data set needs a package that is not installed; the message gives the command."""
