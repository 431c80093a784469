# Two commands do everything on a fresh machine:
#   make demo   set up .venv, build the extension, write the overlay video with the built-in model
#   make test   set up .venv, build the extension, run the tests
# A second run skips the set-up already done (stamp files track what it depends on).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q
STAMP  := $(VENV)/.gi-sdk-installed
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

# Debian's chromium for the web viewer's browser test (tests/test_demo.py). Tried once per
# venv; where it cannot be installed (not root, not Debian) that one test skips and says why.
BROWSER := $(VENV)/.browser-checked
$(BROWSER): $(BIN)/python
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	    { apt-get install -y -q chromium >/dev/null 2>&1 || \
	      { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; }; }; } || \
	  echo "note: chromium not installed; the web viewer's browser test will skip"
	touch $(BROWSER)

test: $(STAMP) $(BROWSER)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# the built-in model (sdk/models/synthetic-demo, shipped in the package) on the built-in
# synthetic endoscope video; another model: make demo DEMO_ARGS='--model FOLDER'
demo: $(STAMP)
	$(BIN)/gi-sdk demo --out $(DEMO_OUT) $(DEMO_ARGS)

# Rebuild the built-in model from nothing (random weights -> trained on synthetic scenes ->
# installed into sdk/models/synthetic-demo); about 12 hours on a 2-core CPU machine.
builtin-model: $(STAMP)
	$(BIN)/python -m gi_sdk.train.builtin

clean:
	rm -rf $(VENV) .cache build *.egg-info out
