# Two commands do everything on a fresh machine:
#   make demo   set up .venv, build the extension, build the tiny model, write the overlay video
#   make test   set up .venv, build the extension, run the tests
# A second run skips the set-up already done (stamp files track what it depends on).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q
STAMP  := $(VENV)/.gi-sdk-installed
MODEL  := .cache/models/tiny-florence2
DEMO_OUT ?= out/overlay.mp4
# more demo flags, e.g.  make demo DEMO_ARGS='--web --ask "Is there a polyp?"'  (gi-sdk demo --help)
DEMO_ARGS ?=
PYTEST_ARGS ?=

# torch: the CPU build that lies on this machine's disk (any other version downloads GBs)
TORCH  := torch==2.13.0

.PHONY: setup test demo bench clean builtin-model

setup: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python setup.py pyproject.toml $(wildcard cpp_ext/*.cpp cpp_ext/*.h)
	$(PIP) install "$(TORCH)"
	$(PIP) install "setuptools>=68" wheel "pybind11>=2.12"
	$(PIP) install --no-build-isolation -e ".[torch,train,export,dev]"
	$(BIN)/python -c "import gi_sdk._native"  # fail here, not in the tests, if the build broke
	touch $(STAMP)

$(MODEL)/config.json: $(STAMP) train/tiny.py
	$(BIN)/python -m gi_sdk.train.tiny --out $(MODEL)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: $(STAMP) $(MODEL)/config.json
	$(BIN)/gi-sdk demo --model $(MODEL) --out $(DEMO_OUT) $(DEMO_ARGS)

# Rebuild the built-in model from nothing (random weights -> trained on synthetic scenes ->
# installed into sdk/models/synthetic-demo); about 1.5 hours on a 2-core CPU machine.
builtin-model: $(STAMP)
	$(BIN)/python -m gi_sdk.train.builtin

clean:
	rm -rf $(VENV) .cache build *.egg-info out
