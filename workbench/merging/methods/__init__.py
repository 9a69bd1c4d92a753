"""The merge methods, one file each; ``MERGES`` imports every module here on its first lookup.

Adding a method is adding a file: register it with ``@factored``/``@elementwise`` or
``MERGES.register`` (see ``workbench.merging.base``); nothing here names the files.
"""
