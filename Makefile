# Everything a fresh machine needs: `make demo` and `make test` build .venv themselves.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# The CPU build of torch; on a GPU server use e.g. `make TORCH_SPEC="torch" demo`.
TORCH_SPEC ?= torch==2.13.0
STAMP  := $(VENV)/.installed

.PHONY: demo test test-all bench venv clean-venv slurm-up slurm-down

venv: $(STAMP)

# One resolution for the torch spec and the package with its extras (nnunetv2 for `trainer:
# nnunetv2` and its tests), so pip keeps that torch instead of pulling another. A current pip
# resolves in half the CPU time of the one venv bundles. pip compiles the bytecode wheel by
# wheel on one core: compileall does it on all of them afterwards (a few files in the wheels
# are for newer Pythons and do not compile; pip skips those too, hence `|| true`).
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --no-compile "$(TORCH_SPEC)" -e ".[test,nnunet]"
	$(PY) -m compileall -qq -j 0 $(VENV)/lib >/dev/null || true
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/foldwatch demo demo-run

# The Slurm tests start a one-node cluster themselves (tests/slurm_cluster.sh: as root it
# installs the Debian packages when missing) and skip, saying why, when they cannot.
# One worker per core; tests/conftest.py orders the longest first and groups the tests that
# share a cluster or a module fixture (loadgroup, in that order: --no-loadscope-reorder).
XDIST := -n auto --dist loadgroup --no-loadscope-reorder
test: $(STAMP)
	$(PY) -m pytest -q -m "not slow" $(XDIST) $(PYTEST_ARGS)

# A one-node Slurm on this machine to try backend: slurm by hand (docs/slurm.md).
slurm-up:
	bash tests/slurm_cluster.sh up
slurm-down:
	bash tests/slurm_cluster.sh down

# Includes the multi-minute training runs (e.g. the 5-fold Dice figure).
test-all: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	for b in bench/*.py; do $(PY) $$b || exit 1; done

clean-venv:
	rm -rf $(VENV)
