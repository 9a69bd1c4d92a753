"""The composition methods, one file each (found by ``COMPOSERS``' package scan)."""
