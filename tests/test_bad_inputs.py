"""The bad-input table: every user mistake gets a clear error and loses nothing.

Each case breaks one input (experiment file, dataset, checkpoint, command line) and asserts
the exit code, that stderr names the file and the field or case, that there is no traceback,
and that every input file is byte-for-byte unchanged. Cases run in-process through
`trainer.cli.main` (the real command's code, minus interpreter start-up); those marked
`real` run `python -m trainer` as a subprocess, where the process boundary is the point.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bad_inputs import (GOOD, check, ckpt_dir, dataset, experiment_file, fake_checkpoint, nifti,
                        train, trained, yaml_text)
from contracts.jsonio import iter_jsonl
from train_fixture import ROOT, trainer_env

OUTPUTS = {"metrics.jsonl", "run.lock"}      # logs a refused attempt may append to


def _exp_with_dataset(tmp: Path, **meta) -> list[str]:
    dataset(tmp / "data", **meta)
    (tmp / "e.yaml").write_text(GOOD)
    return ["plan", "--experiment", str(tmp / "e.yaml"), "--workers", "1"]


def _break(tmp: Path, fn) -> list[str]:
    root = dataset(tmp / "D")
    fn(root)
    return check(root)


def _json(root: Path, **changes) -> None:
    meta = json.loads((root / "dataset.json").read_text())
    for k, v in changes.items():
        if v is None:
            meta.pop(k)
        else:
            meta[k] = v
    (root / "dataset.json").write_text(json.dumps(meta))


def _label(root: Path, data, affine=None, case="C_000"):
    nifti(root / "labelsTr" / f"{case}.nii.gz", data, affine)


def _image(root: Path, data, case="C_001_0000"):
    nifti(root / "imagesTr" / f"{case}.nii.gz", data)


def _seg(value=1, dtype=np.uint8):
    s = np.zeros((8, 8, 6), dtype)
    s[1:3, 1:3, 1:3] = value
    return s


def _ckpt(tmp: Path, name: str, content, *more: str) -> list[str]:
    import torch
    exp = trained(tmp)
    path = ckpt_dir(exp) / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content(exp) if callable(content) else content, path)
    return train(exp, "--resume", *more)


def _tensor():
    import torch
    return torch.zeros(1)


def _digests(exp):
    from contracts.experiment import load_experiment
    from trainer.planning.plans import Plan
    from trainer.training.loop import hparams_hash
    e = load_experiment(exp)
    return Plan.load(e.layout.plan("3d_fullres")).digest(), hparams_hash(e.configurations["3d_fullres"])


def _write_truncated(tmp: Path) -> list[str]:
    import io

    import torch
    exp = trained(tmp)
    buf = io.BytesIO()
    torch.save(fake_checkpoint(), buf)
    (ckpt_dir(exp) / "latest.pt").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return train(exp, "--resume")


def _results_blocked(tmp: Path) -> list[str]:
    (tmp / "results").write_text("a file where the results folder should be")
    return _exp_with_dataset(tmp)


@contextlib.contextmanager
def _read_only_results(tmp: Path, existing_run_folder: bool):
    """results/ on a read-only tmpfs; with the plan stage's run folder already in it or not."""
    ro = tmp / "results"
    ro.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs",
                                            str(ro)], capture_output=True).returncode != 0:
        pytest.skip("needs root to mount a read-only tmpfs")
    try:
        if existing_run_folder:
            (ro / "e/stages/plan").mkdir(parents=True)
        subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
        yield
    finally:
        subprocess.run(["umount", "-l", str(ro)], check=False)


def _read_only(tmp: Path) -> list[str]:
    return _exp_with_dataset(tmp)


def _splits_short(tmp: Path) -> list[str]:
    exp = trained(tmp)
    splits = exp.parent / "results/tiny/splits.json"
    splits.write_text(json.dumps(json.loads(splits.read_text())[:2]))
    return ["train", "--experiment", str(exp), "--configuration", "3d_fullres", "--fold", "3"]


# id: (builder(tmp) -> argv, exit code, substrings stderr must contain, run as a subprocess)
CASES = {
    # -- experiment files ------------------------------------------------------------------
    "yaml-syntax": (lambda t: experiment_file(t, "experiment: e\nconfigurations: [\n"), 2,
                    ["bad.yaml", "not valid YAML", "line"], False),
    "yaml-tab": (lambda t: experiment_file(t, "experiment: e\n\tdataset: d\n"), 2,
                 ["bad.yaml", "line 2"], False),
    "type-epochs": (lambda t: experiment_file(t, GOOD.replace("epochs: 2", "epochs: many")), 2,
                    ["bad.yaml", "configurations.3d_fullres.epochs"], False),
    "unknown-top-key": (lambda t: experiment_file(t, GOOD + "gpu: 1\n"), 2,
                        ["bad.yaml", "gpu", "unknown key"], False),
    "unknown-nested-key": (lambda t: experiment_file(t, GOOD + "    bach_size: 2\n"), 2,
                           ["bad.yaml", "configurations.3d_fullres.bach_size"], False),
    "range-lr": (lambda t: experiment_file(t, GOOD + "    learning_rate: -1\n"), 2,
                 ["bad.yaml", "learning_rate"], False),
    "range-momentum": (lambda t: experiment_file(t, GOOD + "    momentum: 1.5\n"), 2,
                       ["bad.yaml", "momentum"], False),
    "range-fold": (lambda t: experiment_file(t, GOOD + "folds: [0, 7]\n"), 2,
                   ["bad.yaml", "folds[1]"], False),
    "folds-twice": (lambda t: experiment_file(t, GOOD + "folds: [0, 0]\n"), 2,
                    ["bad.yaml", "folds", "twice"], False),
    "patch-dims": (lambda t: experiment_file(t, "experiment: e\ndataset: d\nconfigurations:\n"
                                             "  2d: {patch_size: [64, 64, 64]}\n"), 2,
                   ["bad.yaml", "configurations.2d.patch_size"], False),
    "no-configurations": (lambda t: experiment_file(t, "experiment: e\ndataset: d\n"
                                                    "configurations: {}\n"), 2,
                          ["bad.yaml", "configurations"], False),
    "unknown-configuration": (lambda t: experiment_file(t, GOOD.replace("3d_fullres", "4d")), 2,
                              ["bad.yaml", "4d"], False),
    "duplicate-top-key": (lambda t: experiment_file(t, GOOD + "experiment: f\n"), 2,
                          ["bad.yaml", "line 7", "'experiment' appears twice"], False),
    "duplicate-nested-key": (lambda t: experiment_file(t, GOOD + "    epochs: 5\n"), 2,
                             ["bad.yaml", "line 7", "'epochs' appears twice", "line 5"], False),
    "binary-garbage": (lambda t: experiment_file(t, bytes(range(256)) * 4), 2,
                       ["bad.yaml", "not a text file"], True),
    "nul-bytes": (lambda t: experiment_file(t, b"experiment: e\x00\n"), 2,
                  ["bad.yaml", "NUL"], False),
    "empty-file": (lambda t: experiment_file(t, ""), 2, ["bad.yaml", "expected a mapping"], False),
    "top-level-list": (lambda t: experiment_file(t, "- a\n- b\n"), 2,
                       ["bad.yaml", "expected a mapping"], False),
    "missing-file": (lambda t: ["plan", "--experiment", str(t / "nope.yaml")], 2,
                     ["nope.yaml", "not found"], False),
    "file-is-folder": (lambda t: ["plan", "--experiment", str(t)], 2,
                       ["test_bad_input_gets_a_clear", "is a folder"], False),
    "missing-dataset-key": (lambda t: experiment_file(t, "experiment: e\nconfigurations: {2d: {}}\n"),
                            2, ["bad.yaml", "dataset", "required"], False),
    "bad-experiment-name": (lambda t: experiment_file(t, yaml_text(experiment="a b/c")), 2,
                            ["bad.yaml", "experiment"], False),
    "dataset-folder-missing": (lambda t: experiment_file(t, GOOD), 3,
                               ["data", "dataset not found", "dataset:"], False),
    "results-is-a-file": (_results_blocked, 2, ["results", "is a file", "results:"], True),
    "results-read-only": (_read_only, 2, ["results", "read-only", "results:"], False),
    "run-folder-read-only": (_read_only, 2, ["stages/plan", "read-only", "results:"], False),
    # -- datasets (check-dataset, and plan where the experiment is the entry) ---------------
    "missing-label": (lambda t: _break(t, lambda r: (r / "labelsTr/C_001.nii.gz").unlink()), 3,
                      ["C_001.nii.gz", "case C_001", "label file is missing"], False),
    "missing-channel": (lambda t: _break(t, lambda r: _json(r, channel_names={"0": "a", "1": "b"})),
                        3, ["C_000_0001.nii.gz", "case C_000", "channel 1 is missing"], False),
    "stray-channel": (lambda t: _break(t, lambda r: shutil.copy(r / "imagesTr/C_000_0000.nii.gz",
                                                                r / "imagesTr/C_000_0001.nii.gz")),
                      3, ["C_000_0001.nii.gz", "case C_000", "declares 1 channel"], True),
    "shape-mismatch": (lambda t: _break(t, lambda r: _label(r, np.zeros((8, 8, 5), np.uint8))), 3,
                       ["C_000.nii.gz", "case C_000", "shape"], False),
    "affine-mismatch": (lambda t: _break(t, lambda r: _label(r, _seg(), np.diag([2, 1, 1, 1.0]))),
                        3, ["C_000.nii.gz", "case C_000", "affine"], False),
    "undeclared-label": (lambda t: _break(t, lambda r: _label(r, _seg(5))), 3,
                         ["C_000.nii.gz", "case C_000", "[5] not declared"], False),
    "non-integer-label": (lambda t: _break(t, lambda r: _label(r, _seg(0.5, np.float32))), 3,
                          ["C_000.nii.gz", "case C_000", "non-integer"], False),
    "nan-image": (lambda t: _break(t, lambda r: _image(r, np.full((8, 8, 6), np.nan, np.float32))),
                  3, ["C_001_0000.nii.gz", "case C_001", "NaN"], False),
    "unreadable-nifti": (lambda t: _break(t, lambda r: (r / "imagesTr/C_001_0000.nii.gz")
                                          .write_bytes(gzip.compress(b"garbage" * 40))), 3,
                         ["C_001_0000.nii.gz", "not a readable NIfTI"], False),
    "2d-image": (lambda t: _break(t, lambda r: _image(r, np.zeros((8, 8), np.float32))), 3,
                 ["C_001_0000.nii.gz", "2D image", "one slice"], False),
    "4d-image": (lambda t: _break(t, lambda r: _image(r, np.zeros((8, 8, 6, 2), np.float32))), 3,
                 ["C_001_0000.nii.gz", "4D image", "one 3D file per channel"], False),
    "label-without-image": (lambda t: _break(t, lambda r: _label(r, _seg(), case="C_009")), 3,
                            ["C_009.nii.gz", "case C_009", "label without images"], False),
    "empty-images-folder": (lambda t: _break(t, lambda r: [p.unlink() for p in
                                                           (r / "imagesTr").iterdir()]), 3,
                            ["dataset.json", "no training cases"], False),
    "no-dataset-json": (lambda t: _break(t, lambda r: (r / "dataset.json").unlink()), 3,
                        ["no dataset.json"], False),
    "json-syntax": (lambda t: _break(t, lambda r: (r / "dataset.json").write_text("{ nope")), 2,
                    ["dataset.json", "not valid JSON"], False),
    "json-no-channels": (lambda t: _break(t, lambda r: _json(r, channel_names=None)), 2,
                         ["dataset.json", "channel_names"], False),
    "json-no-background": (lambda t: _break(t, lambda r: _json(r, labels={"organ": 1})), 2,
                           ["dataset.json", "background"], False),
    "json-file-ending": (lambda t: _break(t, lambda r: _json(r, file_ending=".png")), 2,
                         ["dataset.json", "file_ending", ".png"], False),
    "json-num-training": (lambda t: _break(t, lambda r: _json(r, numTraining=5)), 3,
                          ["dataset.json", "numTraining is 5"], False),
    "json-num-training-type": (lambda t: _break(t, lambda r: _json(r, numTraining="two")), 2,
                               ["dataset.json", "numTraining"], False),
    "plan-broken-dataset": (lambda t: _exp_with_dataset(t, numTraining=3), 3,
                            ["dataset.json", "numTraining is 3"], False),
    # -- checkpoints (train --resume) ----------------------------------------------------
    "ckpt-truncated": (_write_truncated, 2, ["latest.pt", "damaged", "truncated"], False),
    "ckpt-garbage": (lambda t: _ckpt(t, "latest.pt", os.urandom(3000)), 2,
                     ["latest.pt", "damaged", "start"], False),
    "ckpt-not-a-dict": (lambda t: _ckpt(t, "latest.pt", [1, 2, 3]), 2,
                        ["latest.pt", "damaged", "list"], False),
    "ckpt-missing-keys": (lambda t: _ckpt(t, "latest.pt", {"model": {}}), 2,
                          ["latest.pt", "missing", "epoch"], False),
    "ckpt-other-configuration": (lambda t: _ckpt(t, "latest.pt", fake_checkpoint(configuration="2d")),
                                 2, ["latest.pt", "'2d'", "3d_fullres"], False),
    "ckpt-other-plan": (lambda t: _ckpt(t, "latest.pt", lambda e: fake_checkpoint(
        hparams_hash=_digests(e)[1])), 2, ["latest.pt", "the plan", "3d_fullres.json"], False),
    "ckpt-other-hparams": (lambda t: _ckpt(t, "latest.pt", lambda e: fake_checkpoint(
        plan_digest=_digests(e)[0], hparams={"epochs": 7})), 2,
                           ["latest.pt", "hyperparameters", "epochs: 7"], False),
    "ckpt-weights-do-not-fit": (lambda t: _ckpt(t, "latest.pt", lambda e: fake_checkpoint(
        plan_digest=_digests(e)[0], hparams_hash=_digests(e)[1], model={"w": _tensor()})), 2,
                                ["latest.pt", "does not fit"], False),
    "ckpt-latest-missing-best-present": (lambda t: _ckpt(t, "best.pt", fake_checkpoint()), 2,
                                         ["latest.pt", "missing", "best.pt"], False),
    "ckpt-exists-without-resume": (lambda t: _ckpt(t, "latest.pt", fake_checkpoint())[:-1], 2,
                                   ["fold_0", "--resume"], False),
    "best-exists-without-resume": (lambda t: _ckpt(t, "best.pt", fake_checkpoint())[:-1], 2,
                                   ["fold_0", "best.pt", "--resume"], False),
    # -- command line -----------------------------------------------------------------------
    "cli-unknown-command": (lambda t: ["trian"], 2, ["'trian'", "commands"], False),
    "cli-fold-range": (lambda t: train(trained(t))[:-1] + ["7"], 2, ["--fold 7", "0 to 4"], False),
    "cli-batch-size": (lambda t: train(trained(t), "--batch-size", "0"), 2,
                       ["--batch-size 0", "positive"], False),
    "cli-missing-fold": (lambda t: train(trained(t))[:-2], 2, ["--fold", "required"], False),
    "cli-configuration": (lambda t: train(trained(t))[:4] + ["2d", "--fold", "0"], 2,
                          ["tiny.yaml", "'2d'"], False),
    "cli-labels": (lambda t: ["evaluate", "--pred", str(t), "--ref", str(t), "--labels", "a,b"], 2,
                   ["--labels", "integers"], False),
    "cli-demo-out-is-file": (lambda t: ["make-demo-data", str(t / "bad.yaml")]
                             if (t / "bad.yaml").write_text("x") else [], 2,
                             ["bad.yaml", "not a folder"], False),
    "cli-splits-short": (_splits_short, 2, ["splits.json", "fold 3", "2 folds"], False),
}


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name not in OUTPUTS}


def _run(argv: list[str], real: bool, capsys) -> tuple[int, str]:
    if real:
        r = subprocess.run([sys.executable, "-m", "trainer", *argv], cwd=ROOT, env=trainer_env(),
                           capture_output=True, text=True, timeout=300)
        return r.returncode, r.stderr
    from trainer.cli import main
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as e:          # argparse's usage errors
        code = e.code
    return code, capsys.readouterr().err


def test_the_table_is_big_enough():
    assert len(CASES) >= 40


@pytest.mark.parametrize("case", CASES)
def test_bad_input_gets_a_clear_error_and_changes_nothing(case, tmp_path, capsys):
    build, code, expect, real = CASES[case]
    ro = (_read_only_results(tmp_path, case.startswith("run-folder")) if "read-only" in case
          else contextlib.nullcontext())
    with ro:
        argv = build(tmp_path)
        before = _hashes(tmp_path)
        got, err = _run(argv, real, capsys)
        after = _hashes(tmp_path)
    assert got == code, err
    assert "Traceback" not in err, err
    for text in expect:
        assert text in err, f"{text!r} not in stderr:\n{err}"
    changed = [p for p in before if after.get(p) != before[p]]
    assert not changed, f"input files changed or removed: {changed}"
    # A refusal after the run folder was taken is also in its log, for the console.
    for log in tmp_path.rglob("metrics.jsonl"):
        end = [e for e in iter_jsonl(log) if e["event"] == "end"]
        if end:
            assert end[-1]["exit_code"] == code and end[-1]["message"]
            assert all(text in end[-1]["message"] for text in expect if text in err.split(
                "error: ", 1)[-1])
