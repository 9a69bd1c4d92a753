"""The searchers, one per file, registered in ``workbench.search.SEARCHERS`` (found by scan)."""
