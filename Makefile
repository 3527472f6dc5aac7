# Everything a fresh machine needs: `make demo` and `make test` build .venv themselves.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# torch 2.13.0. With an NVIDIA driver (`nvidia-smi -L` works) whose CUDA is 13.0 or newer:
# PyPI's build, which on Linux is the CUDA 13.0 one (`===`: exactly that version, never a
# local `+cpu` build a pip configuration may offer). Otherwise the CPU build, as the CI
# machines' pip finds it (`==` also takes their `2.13.0+cpu`). `make TORCH_SPEC=... demo`
# chooses another.
NVIDIA_CUDA := $(shell nvidia-smi -L >/dev/null 2>&1 && nvidia-smi 2>/dev/null | \
                 sed -n 's/.*CUDA Version: *\([0-9][0-9]*\)\.\([0-9]\).*/\1\2/p' | head -n 1)
ifneq ($(NVIDIA_CUDA),)
ifeq ($(shell test $(NVIDIA_CUDA) -ge 130 && echo yes),yes)
TORCH_SPEC ?= torch===2.13.0
else
TORCH_WARNING := the NVIDIA driver here supports CUDA $(NVIDIA_CUDA) (x10); torch 2.13.0's CUDA build needs 13.0 (driver >= 580): the CPU build goes in. Update the driver, or name a build with TORCH_SPEC=...
endif
endif
TORCH_SPEC ?= torch==2.13.0
STAMP  := $(VENV)/.installed
# The torch spec a venv was built with; another spec rebuilds torch (an old empty stamp: kept).
BUILT_SPEC := $(shell cat $(STAMP) 2>/dev/null)

.PHONY: demo test test-all bench venv clean-venv slurm-up slurm-down gpu-check gpu-wheels FORCE

venv: $(STAMP)

# One resolution for the torch spec and the package with its extras (nnunetv2 for `trainer:
# nnunetv2` and its tests), so pip keeps that torch instead of pulling another. A current pip
# resolves in half the CPU time of the one venv bundles. pip compiles the bytecode wheel by
# wheel on one core: compileall does it on all of them afterwards (a few files in the wheels
# are for newer Pythons and do not compile; pip skips those too, hence `|| true`). A venv
# built with another torch spec (recorded in the stamp) is rebuilt with this one.
$(STAMP): pyproject.toml $(if $(filter-out $(TORCH_SPEC),$(BUILT_SPEC)),FORCE)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(if $(TORCH_WARNING),@echo "warning: $(TORCH_WARNING)")
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --no-compile "$(TORCH_SPEC)" -e ".[test,nnunet]"
	$(PY) -m compileall -qq -j 0 $(VENV)/lib >/dev/null || true
	@$(PY) -c "import torch; print('torch', torch.__version__, '- CUDA', torch.version.cuda or 'none (CPU build)', '-', torch.cuda.device_count(), 'GPU(s) visible')"
	@echo "$(TORCH_SPEC)" > $(STAMP)

FORCE:

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
	for b in bench/[!_]*.py; do $(PY) $$b || exit 1; done

# The GPU acceptance run (bench/gpu_check/; docs/training.md): on an NVIDIA GPU all of it
# in 8 minutes at most, without one the dry run, which says so. Where wheels were carried in
# .whl/ (a GPU machine without a registry) it runs on python3 and installs them itself.
CHECK_PY := $(if $(wildcard .whl/*.whl),$(if $(wildcard $(PY)),$(PY),$(PYTHON)),$(PY))
gpu-check: $(if $(wildcard .whl/*.whl),,$(STAMP))
	$(CHECK_PY) -m bench.gpu_check $(GPU_CHECK_ARGS)

# The wheels gpu-check needs on such a machine, downloaded into .whl/ (WHEEL_SET=base: without
# nnU-Net); prints their total against what a device call may carry.
gpu-wheels:
	bash bench/gpu_wheels.sh $(or $(WHEEL_SET),all)

clean-venv:
	rm -rf $(VENV)
