# Three commands set up everything on a fresh machine with Python 3.11:
#   make book   build the HTML book from runs/ into _build/html
#   make test   run the tests
#   make lab    JupyterLab at the repository root: the chapters (book/*.md) open as notebooks
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

LAB_SETTINGS := $(VENV)/share/jupyter/lab/settings

.PHONY: book test study data lab clean-book gpu-check

$(STAMP): requirements.txt pyproject.toml book/_lab/overrides.json
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	mkdir -p $(LAB_SETTINGS) && cp book/_lab/overrides.json $(LAB_SETTINGS)/overrides.json
	touch $(STAMP)

book: $(STAMP)
	$(VENV)/bin/jupyter-book build --all -W --keep-going .

# the browser test (tests/test_book.py) lays the book out in Debian's chromium, headless
test: $(STAMP)
	@command -v chromium >/dev/null || (echo "installing chromium for the browser test" && apt-get update -qq \
	  && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "could not install chromium: the browser test will fail"
	$(PY) -m pytest -q

# Two runs at a time with one thread each: ~8% more throughput than one two-thread run here.
# Seeds 0..SEEDS-1, default vgg.spec.SEEDS (3, as the claims' intervals need). Of the runs
# whose parents are done, the one with the longest chain of runs still to come starts first
# (priced from the epochs on record), so both cores stay busy to the end. HOURS=2.5 starts
# only the chains of runs that can finish within 2.5 h (checkpoints do not outlive a machine).
JOBS ?= 2
PROFILE ?= cpu
study: $(STAMP)
	$(PY) -m vgg study --profile $(PROFILE) $(if $(SEEDS),--seeds $(SEEDS)) --jobs $(JOBS) $(if $(HOURS),--hours $(HOURS))

# MyST Markdown chapters open as notebooks (jupytext; book/_lab/overrides.json) and save back
# as Markdown; the kernel is the project's python3. Open the URL it prints.
LAB_PORT ?= 8888
lab: $(STAMP)
	$(VENV)/bin/jupyter lab --no-browser --ip=127.0.0.1 --port=$(LAB_PORT) --ServerApp.root_dir=$(CURDIR) --allow-root

data: $(STAMP)
	$(PY) -m vgg data --download

# On a machine with a CUDA GPU: bench gpu, a short D training at the paper's profile (images on
# the GPU, then streamed), torchrun over its GPUs; figures in runs/gpu-check (issue 21)
gpu-check: $(STAMP)
	.ci/gpu-check

clean-book:
	rm -rf _build
