"""The run store: what the lab made, evaluated and searched, recorded in MLflow (a local SQLite file
by default), and merge recipes that re-create a merge bit for bit.

    lab.track("sqlite:///runs.db")      # or on by default when MLflow is installed; lab.track(False): off
    lab.runs()                          # every record as a DataFrame
    lora-workbench runs                 # the same, from the command line
    lora-workbench merge recipe.json    # a recorded merge, again
"""

from workbench.runs.card import model_card
from workbench.runs.recipe import finder, read_recipe, recipe_of, replay, write_recipe
from workbench.runs.tracker import (
           DEFAULT_URI,
           ENV,
           EXPERIMENT,
           RUN_COLUMNS,
           Tracker,
           available,
           from_env,
           read_runs,
)

__all__ = ["DEFAULT_URI", "ENV", "EXPERIMENT", "RUN_COLUMNS", "Tracker", "available", "finder", "from_env",
           "model_card", "read_recipe", "read_runs", "recipe_of", "replay", "write_recipe"]
