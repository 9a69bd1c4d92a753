"""Merge recipes: a JSON file that re-creates a merge bit for bit from its sources.

    recipe = recipe_of(lab.adapters["merged"], base=lab.name)     # method, params, weights, seed, sources
    write_recipe(recipe, "merged.recipe.json")
    adapter = replay(read_recipe("merged.recipe.json"), find)        # find(source) -> the source Adapter

The recipe names each source by its content fingerprint (``adapter_fingerprint``), and the result's
fingerprint too, so a replay checks both: a source that changed is refused by name, and a replay that
does not give the same adapter says so. ``lora-workbench merge RECIPE`` finds the sources in the run
store (every adapter the lab made or loaded is recorded with its PEFT files) or in folders it is given.

Reference: mergekit's YAML merge configurations (Goddard et al., 2024), which re-create a merge from
its sources; deviation: sources are pinned by content fingerprint, not by a hub revision.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path

from workbench.adapters import Adapter
from workbench.adapters.files import write_text_atomic
from workbench.adapters.update_cache import adapter_fingerprint
from workbench.errors import WorkbenchError
from workbench.merging import MERGES, merge

FORMAT = "lora-workbench-merge-recipe/1"


def recipe_of(adapter: Adapter, *, base: str) -> dict:
    """The recipe of a merged adapter (its lineage's ``merge`` record), with the result's fingerprint.

    Raises:
        WorkbenchError: the adapter is not a merge, or its method needs data the recipe cannot hold.
    """
    merge_rec = adapter.lineage.get("merge")  # the merge engine's record (workbench.merging.engine)
    if not isinstance(merge_rec, Mapping):
        raise WorkbenchError(f"adapter {adapter.name!r} is not a merge (lineage method "
                             f"{adapter.lineage.get('method')!r}): only merges have recipes")
    method = merge_rec["method"]
    if MERGES.has(method, "needs_data"):
        raise WorkbenchError(f"a {method} merge needs data beyond its sources (statistics or training), "
                             "which a recipe does not hold; keep the merged adapter's PEFT folder instead")
    return {"format": FORMAT, "base": {"name": base, "fingerprint": adapter.base_fingerprint},
            "method": method, "params": dict(merge_rec.get("params", {})),
            "weights": list(merge_rec["weights"]), "seed": merge_rec.get("seed", 0),
            "targets": merge_rec.get("targets", "same"),
            "sources": [{"name": s["name"], "fingerprint": s["fingerprint"]} for s in merge_rec["sources"]],
            "result": {"name": adapter.name, "fingerprint": adapter_fingerprint(adapter)}}


def write_recipe(recipe: Mapping, path: str | Path) -> Path:
    """Write a recipe as JSON, atomically."""
    return write_text_atomic(Path(path), json.dumps(recipe, indent=1) + "\n")


def read_recipe(path: str | Path) -> dict:
    """Read and check a recipe file.

    Raises:
        WorkbenchError: missing file, not JSON, another format, or missing fields (each named).
    """
    path = Path(path)
    if not path.is_file():
        raise WorkbenchError(f"no recipe at {path}; a merged adapter's run in the store has one "
                             "(recipe.json)")
    try:
        recipe = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise WorkbenchError(f"{path} is not JSON ({e}); a recipe is the recipe.json of a merge") from None
    if not isinstance(recipe, dict) or recipe.get("format") != FORMAT:
        raise WorkbenchError(f"{path} is not a merge recipe (format {FORMAT!r} expected)")
    missing = [k for k in ("base", "method", "params", "weights", "sources", "result") if k not in recipe]
    if missing:
        raise WorkbenchError(f"recipe {path} lacks {missing}; re-export it with recipe_of")
    return recipe


def replay(recipe: Mapping, find: Callable[[Mapping], Adapter]) -> Adapter:
    """Merge the recipe's sources again; the result must have the recipe's fingerprint.

    Args:
        recipe: from ``read_recipe`` or ``recipe_of``.
        find: gives the source ``Adapter`` for a recipe source (``{"name", "fingerprint"}``).

    Raises:
        WorkbenchError: a source whose content differs from the recipe's, or a result that differs.
    """
    sources = []
    for src in recipe["sources"]:
        adapter = find(src)
        got = adapter_fingerprint(adapter)
        if got != src["fingerprint"]:
            raise WorkbenchError(f"source {src['name']!r} has content {got}, the recipe merged "
                                 f"{src['fingerprint']}: it changed since the merge; find the original")
        sources.append(adapter.copy(name=src["name"]) if adapter.name != src["name"] else adapter)
    result = merge(sources, recipe["method"], list(recipe["weights"]), name=recipe["result"]["name"],
                   seed=int(recipe.get("seed", 0)), targets=recipe.get("targets", "same"),
                   **dict(recipe["params"])).adapter
    got = adapter_fingerprint(result)
    if got != recipe["result"]["fingerprint"]:
        raise WorkbenchError(f"the replayed merge has content {got}, the recipe's result is "
                             f"{recipe['result']['fingerprint']}: this version merges differently")
    return result


def finder(uri: str | None = None, experiment: str | None = None, folders=()) -> Callable[[Mapping], Adapter]:
    """A ``find`` for ``replay``: each source by fingerprint among PEFT ``folders``, then in the run store.

    Raises (when called):
        WorkbenchError: no folder and no recorded run holds an adapter with that fingerprint.
    """
    from workbench.adapters import read_peft
    from workbench.runs.tracker import EXPERIMENT, read_runs

    cache: dict[str, Adapter] = {}

    def find(src: Mapping) -> Adapter:
        fp = src["fingerprint"]
        if not cache:
            for folder in folders:
                a = read_peft(folder)
                cache[adapter_fingerprint(a)] = a
        if fp in cache:
            return cache[fp]
        if uri is not None:
            runs = read_runs(uri, experiment or EXPERIMENT, kind="adapter")
            for artifact_uri in runs.loc[runs.fingerprint == fp, "artifact_uri"]:  # the run with its files
                folder = _local(artifact_uri) / "adapter"
                if (folder / "adapter_config.json").is_file():
                    cache[fp] = read_peft(folder, src["name"])
                    return cache[fp]
        where = [str(f) for f in folders] + ([f"the run store {uri}"] if uri else [])
        raise WorkbenchError(f"no adapter with content {fp} (source {src['name']!r}) in "
                             f"{where or 'nothing'}; pass its PEFT folder with --sources, or the store it "
                             "was recorded in with --store")

    return find


def _local(artifact_uri: str) -> Path:
    from urllib.parse import unquote, urlparse

    if not artifact_uri.startswith("file:"):
        raise WorkbenchError(f"artifacts at {artifact_uri} are not on this machine; download them first")
    return Path(unquote(urlparse(artifact_uri).path))
