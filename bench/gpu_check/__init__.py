"""The GPU acceptance run (issue #21): one prepared command, figures a reader can trust.

On a machine with an NVIDIA GPU it measures, in this order, each group of steps in a child
process with its own time limit inside one overall budget (8 minutes by default), and
rewrites `gpu-check.json` and `gpu-check.md` after every group, so a run killed half-way
still leaves its figures:

1. versions      torch, CUDA, cuDNN, driver, GPU model and memory, cores   (machine.py)
2. gpu_tests     the `gpu`-marked tests (pytest -m gpu)                    (machine.py)
3. dataset       the demo CT dataset, generated (shared by the steps below) (dataset.py)
4. nvml / placement / kill_resume   one session: two folds of one experiment on the chosen
                 GPU (`runs_per_gpu: 2`) beside a foreign CUDA process; the console's
                 sampler (`foldwatch status --json`) against `nvidia-smi`, attribution by pid
                 and by the container fallback, each run's CUDA_VISIBLE_DEVICES, then one
                 fold SIGKILLed mid-epoch and resumed by the supervisor's watchdog
                 (two_runs.py, nvml_check.py, kill_resume.py)
5. trainer       2d and 3d_fullres: samples/s of the real data pipeline against a bare loop
                 (bench/trainer_throughput.py, AMP on, `num_workers: auto`), data-wait
                 fraction, the allocator's peak against the plan's estimate and
                 `probe-memory`'s prediction                               (throughput.py)
6. nnunet        nnU-Net v2 (`trainer: nnunetv2`) and foldwatch's trainer on the same
                 dataset, patch and batch: iterations/s, samples/s, the Dice each reaches in
                 the same wall time and after the same iterations          (nnunet_side.py)
7. demo          `foldwatch demo --headless` on the GPU: wall time and Dice beside the
                 README's CPU figures                                      (demo.py)

Every figure has a unit and says how it was measured; every ratio is of two figures
measured in the same run. Without a GPU (or with --dry-run) the same steps run on the CPU
with tiny sizes to prove they work, and the steps that need a GPU say why they were
skipped (tests/test_gpu_check.py runs this dry run in `make test`).

    python -m bench.gpu_check [--out DIR] [--steps nvml,trainer] [--dry-run] [--budget-s 480]
    make gpu-check [GPU_CHECK_ARGS="--out DIR"]

The rest of the package: cli.py (arguments, mode), runner.py (the budget, one child process
per group, leftovers ended), groups.py (the table of groups and their limits), context.py
(what a step works with, the commands it runs), session.py (an experiment supervised for
one step and put down after it), report.py (the JSON and Markdown).

Packages: what is missing (monai, nibabel, pydantic, nnunetv2 ...) is installed from the
wheels in `.whl/` (made by `make gpu-wheels`) into a folder outside the repo, and the command
starts itself again with it on PYTHONPATH; the torch already installed is used.

The prepared device call (docs/training.md, "GPU acceptance run"): here, `make gpu-wheels`
once (46.5 MiB of wheels in .whl/, listed and summed by bench/gpu_wheels.sh), then `run`
with carry [".whl"], timeout_s 540 and the command

    set -o pipefail; PYTHONUNBUFFERED=1 python3 -m bench.gpu_check --out $OUT 2>&1 | tee $OUT/gpu-check.log

A step that the budget left out is run by a second call with `--steps NAME`.
"""
