# The two commands of the README. Each creates .venv/ when it is missing and
# installs the package from this repository's own files (setup.cfg, pinned by
# constraints.txt) before running.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 2
export MPLBACKEND := Agg

.PHONY: demo test bench venv clean

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m examples.sweep --out=out/demo

test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadscope --no-loadscope-reorder -q

bench: $(STAMP)
	$(PY) -m benchmarks.run_all

clean:
	rm -rf $(VENV) runs out
