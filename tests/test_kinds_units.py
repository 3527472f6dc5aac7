"""Trainer kinds without processes: the experiment keys, nnU-Net's log parsed into events
(a real nnU-Net 2.8.1 log in tests/data), the job graphs and argument lists, failure texts."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import yaml

from console.kinds import kind_for
from console.runner.failures import recognise
from console.runner.nnunet_log import NnunetLogParser, parse_dice_list
from contracts.errors import ConfigError
from contracts.experiment import load_experiment, parse_experiment

REPO = Path(__file__).resolve().parents[1]
LOG = Path(__file__).parent / "data" / "nnunet_training_log.txt"


def test_real_nnunet_log_becomes_checkpoint_then_epoch_events():
    p = NnunetLogParser()
    out = [ev for line in LOG.read_text().splitlines() for ev in p.feed(line)] + p.flush()
    epochs = [f for n, f in out if n == "epoch"]
    text = LOG.read_text()
    assert [e["epoch"] for e in epochs] == [0, 1, 2, 39]
    assert [e["train_loss"] for e in epochs] == [float(x) for x in re.findall(r"train_loss (\S+)", text)]
    assert [e["lr"] for e in epochs] == [float(x) for x in
                                         re.findall(r"Current learning rate: (\S+)", text)]
    assert epochs[0]["val_dice_per_class"] == [0.8472] and epochs[0]["epoch_s"] == 4.15
    assert epochs[3]["ema_dice"] == pytest.approx(0.99669998) and epochs[3]["new_best"]
    names = [n for n, _ in out]
    # every epoch is announced after its checkpoints (checkpoint-then-announce)
    first_epoch = names.index("epoch")
    assert names[:first_epoch] == ["checkpoint", "checkpoint"]
    final = [f for n, f in out if n == "checkpoint" and f["kind"] == "final"]
    assert final and final[0]["epoch"] == 40 and final[0]["path"].endswith("checkpoint_final.pth")
    progress = [f for n, f in out if n == "progress"]
    assert progress[-1] == {"stage": "validation", "done": 2, "total": 2, "mean_dice": 1.0}


def test_dice_lists_and_ema_without_a_new_best():
    assert parse_dice_list("np.float32(0.5), np.float32(nan), 0.25") == [0.5, None, 0.25]
    p = NnunetLogParser(ema=0.5)
    for line in ("Epoch 7", "train_loss -0.1", "val_loss -0.2", "Pseudo dice [0.9, 0.7]",
                 "Epoch time: 3.0 s"):
        assert p.feed("2026-01-01 00:00:00.000001: " + line) == []
    (name, ev), = p.feed("Epoch 8")
    assert name == "epoch" and ev["val_dice"] == pytest.approx(0.8)
    assert ev["ema_dice"] == pytest.approx(0.9 * 0.5 + 0.1 * 0.8)
    p.feed("Current learning rate: 0.01")
    assert p.flush() == []          # an epoch cut off before its losses is not announced


def test_the_trainers_batch_and_iterations_give_nnunet_folds_their_samples_per_s():
    """nnunet_fold logs what the trainer uses once initialised; every later epoch carries it,
    and the console's samples/s is batch x iterations / epoch time, preferred to what the
    start event said (a variant may change either)."""
    from console.engine.runmetrics import RunMetrics

    def epochs(lines):
        p = NnunetLogParser()
        return [ev for line in lines + ["Training done."]
                for name, ev in p.feed(f"2026-01-01 00:00:00.000001: {line}") if name == "epoch"]
    one = ["Epoch 0", "train_loss -0.1", "Epoch time: 10.0 s"]
    plain, = epochs(one)                              # an older entry point: the start's figures
    assert "effective_batch" not in plain and "iterations_per_epoch" not in plain
    told, = epochs(["foldwatch training batch_size 12 iterations_per_epoch 100"] + one)
    assert (told["effective_batch"], told["iterations_per_epoch"]) == (12, 100)
    m = RunMetrics()
    m.feed({"t": 0, "event": "start", "epochs": 2, "iterations_per_epoch": 250,
            "batch_size": 2, "effective_batch": 2})
    m.feed({"t": 1, "event": "epoch", **plain})
    assert m.samples_per_s == 2 * 250 / 10.0
    m.feed({"t": 2, "event": "epoch", **told, "epoch": 1, "epoch_s": 20.0})
    assert m.samples_per_s == 12 * 100 / 20.0 and m.history[-1].samples_per_s == 60.0


def test_entry_point_warnings_in_nnunets_log_become_warning_events():
    """trainer.external.nnunet_fold writes `foldwatch warning ...` with nnU-Net's
    print_to_log_file (time stamp first) when its W&B logger could not start."""
    p = NnunetLogParser()
    p.feed("Epoch 3")
    out = p.feed("2026-12-07 05:36:58.123456: foldwatch warning W&B could not start "
                 "(ServerResponseError: run ID abc is in use); this attempt trains without W&B ")
    assert out == [("warning", {"message": "W&B could not start (ServerResponseError: run ID "
                                           "abc is in use); this attempt trains without W&B"})]
    assert p.epoch is not None and p.epoch["epoch"] == 3          # the epoch goes on


def test_at_a_runs_end_an_epoch_is_announced_only_with_its_checkpoint():
    """A crash, stop or kill ends the log: the epoch in progress is announced if its latest
    (or, for the last epoch, final) checkpoint was saved, else --c redoes it. nnU-Net's str()
    of a time stamp drops a zero fraction."""
    lines = ["Epoch 4", "train_loss -0.1", "val_loss -0.2", "Pseudo dice [0.5]",
             "Epoch time: 2.0 s"]
    for saved, ended, announced in ((None, True, []), ("best", True, []),
                                    ("latest epoch 4", True, []), ("latest epoch 5", True, [4]),
                                    ("final epoch 5", True, [4]), (None, False, [4])):
        p = NnunetLogParser()
        extra = [f"foldwatch checkpoint {saved} /f/c.pth"] if saved else []
        for line in lines + extra:
            p.feed("2026-01-01 00:00:00: " + line)
        assert [ev["epoch"] for _, ev in p.flush(ended=ended)] == announced, (saved, ended)
    p = NnunetLogParser()
    for line in lines + ["Training done."]:            # nnU-Net's own end: always announced
        p.feed(line)
    assert p.flush(ended=True) == [] and p.epoch is None


def test_a_real_nnunet_log_cut_by_a_kill_is_replayed_from_where_the_runner_stopped(tmp_path):
    """nnU-Net 2.8.1's log (tests/data) cut by a SIGKILL after epoch 2's saves; the killed
    runner had read it up to epoch 1's latest save. The next runner replays the rest: epoch
    1's best save and its epoch, epoch 2's saves and epoch 2, checkpoint then announce."""
    from datetime import datetime

    from console.runner.replay import last_attempt, nnunet_missing
    from contracts.jsonio import EventWriter
    text = LOG.read_text().splitlines()
    cut = next(i for i, ln in enumerate(text) if "checkpoint best epoch 3" in ln) + 1
    read = next(i for i, ln in enumerate(text) if "checkpoint latest epoch 2" in ln) + 1
    fold = tmp_path / "Dataset901_Tiny" / "nnUNetTrainer__nnUNetPlans__2d" / "fold_1"
    fold.mkdir(parents=True)
    (fold / "training_log_2026_11_22_17_32_40.txt").write_text("\n".join(text[:cut]) + "\n")
    began = datetime.fromisoformat("2026-11-22 17:32:39").timestamp()
    start = {"t": began, "event": "start", "configuration": "2d", "fold": 1, "attempt": 1,
             "resumed_from": None}          # written before nnU-Net's first line
    (tmp_path / "metrics.jsonl").write_text(json.dumps(start) + "\n")
    live = NnunetLogParser()
    with EventWriter(tmp_path / "metrics.jsonl") as w:
        for line in text[:read]:
            for name, fields in live.feed(line):
                w.write(name, **fields)
    last = last_attempt(tmp_path / "metrics.jsonl")
    assert [c["epoch"] for c in last.checkpoints] == [1, 1, 2] and last.epochs == {0}
    got = nnunet_missing(last, str(tmp_path / "Dataset901_*" / "*" / "fold_1"))
    assert [(n, f.get("kind"), f["epoch"], f["replayed"]) for n, f in got] == [
        ("checkpoint", "best", 2, True), ("epoch", None, 1, True),
        ("checkpoint", "latest", 3, True), ("checkpoint", "best", 3, True),
        ("epoch", None, 2, True)]
    assert got[-1][1]["train_loss"] == -0.7578 and got[-1][1]["new_best"]
    assert got[-1][1]["ema_dice"] == pytest.approx(0.8675000071525574)
    # nothing is replayed twice: once announced, the next resume finds nothing missing
    with EventWriter(tmp_path / "metrics.jsonl") as w:
        w.write("start", configuration="2d", fold=1, attempt=2, resumed_from=3)
    assert nnunet_missing(last_attempt(tmp_path / "metrics.jsonl"),
                          str(tmp_path / "Dataset901_*" / "*" / "fold_1")) == []


def _nn(tmp: Path, **extra) -> dict:
    return {"experiment": "nn", "trainer": "nnunetv2", "results": str(tmp / "r"),
            "configurations": {"3d_lowres": {}, "3d_cascade_fullres": {}},
            "folds": [0, 1, 2, 3, 4], "nnunet": {"dataset": 7, "raw": str(tmp / "raw"),
                                        "preprocessed": str(tmp / "pre"),
                                        "results": str(tmp / "res"), **extra}}


def _load(tmp: Path, data: dict):
    f = tmp / "e.yaml"
    f.write_text(yaml.safe_dump(data))
    return load_experiment(f)


def test_nnunet_graph_cascade_stagger_and_arguments(tmp_path):
    kind = kind_for(_load(tmp_path, _nn(tmp_path, epochs=5, workers=3)))
    jobs = {j.key: j for j in kind.build_jobs()}
    assert list(jobs)[:1] == ["plan"]
    lowres = tuple(f"3d_lowres/{k}" for k in range(5))
    cascade = tuple(f"3d_cascade_fullres/{k}" for k in range(5))
    assert set(jobs["3d_cascade_fullres/0"].depends_on) == {"plan", *lowres}
    assert jobs["3d_lowres/1"].starts_after == ("3d_lowres/0",)
    assert jobs["find-best"].depends_on == lowres + cascade
    assert jobs["ensemble"].depends_on == tuple(
        f"predict-{c}-fold{k}" for c in ("3d_lowres", "3d_cascade_fullres") for k in range(5))
    assert jobs["postprocess"].depends_on == ("ensemble",)
    argv, env, resume = kind.launch(jobs["plan"], "cpu0", None)
    assert argv[argv.index("--") + 1].endswith("nnUNetv2_plan_and_preprocess")
    assert set(argv[argv.index("-c") + 1:argv.index("-c") + 3]) == {"3d_lowres", "3d_fullres"}
    assert env["nnUNet_raw"] == str(tmp_path / "raw") and "nnUNet_n_proc_DA" not in env
    argv, env, resume = kind.launch(jobs["3d_lowres/1"], "gpu2", None)
    assert env["nnUNet_n_proc_DA"] == "3"
    program = argv[argv.index("--") + 1:]
    assert program[1:4] == ["-m", "trainer.external.nnunet_fold", "7"]
    assert program[program.index("-device") + 1] == "cuda" and "--npz" in program
    assert "--c" not in program and not resume and "--epochs" in program
    fold_dir = tmp_path / "res" / "Dataset007_X" / "nnUNetTrainer__nnUNetPlans__3d_lowres" / "fold_1"
    fold_dir.mkdir(parents=True)
    (fold_dir / "checkpoint_latest.pth").write_bytes(b"x")
    argv, env, resume = kind.launch(jobs["3d_lowres/1"], "cpu0", None)
    assert resume and "--c" in argv and argv[argv.index("-device") + 1] == "cpu"
    # find-best names the fold whose checkpoint_final.pth is missing
    argv, _, _ = kind.launch(jobs["find-best"], "cpu0", None)
    assert any("fold 3d_lowres/1 has no checkpoint_final.pth" in a for a in argv)


def test_export_wandb_switches_nnunets_own_logger_on_for_folds_only(tmp_path):
    from console.bridges.exporters.process import ExporterProcess, sinks_wanted
    data = {**_nn(tmp_path), "export": {"tensorboard": True,
                                        "wandb": {"mode": "online", "project": "liver"}}}
    exp = _load(tmp_path, data)
    kind = kind_for(exp)
    jobs = {j.key: j for j in kind.build_jobs()}
    _, env, _ = kind.launch(jobs["3d_lowres/3"], "gpu0", None)
    assert {k: env[k] for k in ("nnUNet_wandb_enabled", "nnUNet_wandb_project",
                                "nnUNet_wandb_mode", "WANDB_RUN_GROUP", "WANDB_NAME")} == {
        "nnUNet_wandb_enabled": "1", "nnUNet_wandb_project": "liver",
        "nnUNet_wandb_mode": "online", "WANDB_RUN_GROUP": "nn", "WANDB_NAME": "3d_lowres/fold_3"}
    _, env, _ = kind.launch(jobs["plan"], "cpu0", None)
    assert "nnUNet_wandb_enabled" not in env               # stages train nothing
    assert sinks_wanted(exp) == ["tensorboard"]            # no second run per fold
    # other kinds: the exporter writes the W&B runs; `wandb: true` is offline, named by the
    # experiment
    plain = parse_experiment({"experiment": "x", "dataset": "d", "configurations": {"2d": {}},
                              "export": {"wandb": True}})
    assert sinks_wanted(plain) == ["wandb"] and plain.export.wandb.mode == "offline"
    assert plain.wandb_project == "x" and ExporterProcess(plain).wandb_mode == "offline"
    online = parse_experiment({"experiment": "x", "dataset": "d", "configurations": {"2d": {}},
                               "export": {"wandb": {"mode": "online"}}})
    assert ExporterProcess(online).wandb_mode == "online"     # the exporter's WANDB_MODE
    _, env, _ = kind_for(plain).launch(kind_for(plain).build_jobs()[-1], "gpu0", None)
    assert not any(k.startswith(("nnUNet_wandb", "WANDB")) for k in env)


def test_nnunet_roots_must_be_known(tmp_path, monkeypatch):
    for v in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.delenv(v, raising=False)
    data = _nn(tmp_path)
    del data["nnunet"]["results"], data["nnunet"]["raw"]
    exp = _load(tmp_path, data)
    with pytest.raises(ConfigError, match=r"nnunet.raw \(or \$nnUNet_raw\), nnunet.results"):
        kind_for(exp)
    assert "find-best" in {j.key for j in kind_for(exp, launching=False).build_jobs()}


@pytest.mark.parametrize("section, expected", [
    ({"argv": ["x", "{epoch}"]}, "unknown placeholder {epoch}"),
    ({"argv": ["x"], "metrics": "stdout_pattern", "pattern": "loss=(?P<loss>.*)"},
     "no (?P<epoch>...) group"),
    ({"argv": ["x"], "metrics": "stdout_pattern", "pattern": "(?P<epoch>\\d+"},
     "not a valid regular expression"),
    ({"argv": ["x"], "metrics": "stdout_pattern", "pattern": "(?P<epoch>\\d+) (?P<acc>.*)"},
     "['acc'] are not known"),
    ({"argv": ["x"], "resume_args": ["--load", "{checkpoint}"]}, "without `checkpoints:`"),
])
def test_command_settings_errors(section, expected):
    with pytest.raises(ConfigError) as e:
        parse_experiment({"experiment": "c", "trainer": "command",
                          "configurations": {"u": {}}, "command": section})
    assert expected in str(e.value)


def test_kind_sections_must_match_the_trainer():
    with pytest.raises(ConfigError, match="needs a `nnunet:` section"):
        parse_experiment({"experiment": "c", "trainer": "nnunetv2", "configurations": {"2d": {}}})
    with pytest.raises(ConfigError, match="`command:` is set but trainer is 'foldwatch'"):
        parse_experiment({"experiment": "c", "dataset": "d", "configurations": {"2d": {}},
                          "command": {"argv": ["x"]}})
    with pytest.raises(ConfigError, match="3d_cascade_fullres needs 3d_lowres"):
        parse_experiment({"experiment": "c", "trainer": "nnunetv2", "nnunet": {"dataset": 1},
                          "configurations": {"3d_cascade_fullres": {}}})


def test_command_argv_placeholders_and_resume(tmp_path):
    data = {"experiment": "c", "trainer": "command", "results": str(tmp_path / "r"),
            "configurations": {"unet": {}}, "folds": [3],
            "command": {"argv": ["python", "t.py", "--fold", "{fold}", "--dev", "{device}",
                                 "--exp", "{experiment}/{configuration}"],
                        "resume_args": ["--load", "{checkpoint}"],
                        "checkpoints": "{run_dir}/ck/*.pth"}}
    kind = kind_for(_load(tmp_path, data))
    job, = kind.build_jobs()
    argv, env, resume = kind.launch(job, "gpu1", None)
    assert argv[:3] == [sys.executable, "-m", "console.runner"] and not resume
    assert argv[argv.index("--") + 1:] == ["python", "t.py", "--fold", "3", "--dev", "cuda",
                                            "--exp", "c/unet"]
    (job.run_dir / "ck").mkdir(parents=True)
    (job.run_dir / "ck" / "e1.pth").write_bytes(b"1")
    (job.run_dir / "ck" / ".e2.pth").write_bytes(b"partial")   # a temp file: never resumed from
    argv, env, resume = kind.launch(job, "cpu0", None)
    assert resume and argv[-2:] == ["--load", str(job.run_dir / "ck" / "e1.pth")]


def test_known_failures():
    assert recognise("RuntimeError: CUDA out of memory. Tried to allocate", 1).exit_code == 75
    f = recognise("RuntimeError: Could not find a dataset with the ID 999. Make sure", 1)
    assert f.reason == "usage" and "unknown nnU-Net dataset 999: no Dataset999_*" in f.message
    assert recognise("OSError: [Errno 28] No space left on device", 1).exit_code == 74
    assert "fewer workers" in recognise("Some background workers are no longer alive", 1).message
    # nnU-Net's W&B logger, online without a login (wandb 0.31's words): not worth retrying
    f = recognise("wandb.errors.errors.UsageError: No API key configured. Use `wandb login` to "
                  "log in.", 1)
    assert f.exit_code == 2 and "export.wandb.mode: offline" in f.message
    assert recognise("all fine", 0) is None and recognise("Traceback: boom", 1) is None


def test_example_files_are_valid():
    kinds = {load_experiment(p).trainer for p in (REPO / "configs" / "examples").glob("*.yaml")}
    assert kinds == {"foldwatch", "nnunetv2", "command"}


def test_later_folds_wait_for_the_first_to_train_an_epoch(tmp_path, monkeypatch):
    from console.engine.core import Engine
    from engine_helpers import cpu_sampler
    data = _nn(tmp_path)
    data["configurations"] = {"2d": {}}
    data["nnunet"]["plan"] = False
    eng = Engine(_load(tmp_path, data), sampler=cpu_sampler(), autostart=False)
    try:
        first, second = eng.runs["2d/0"], eng.runs["2d/1"]
        first.wanted = second.wanted = True
        assert eng.runs.blocker(second) == "2d/0"
        first.metrics.feed({"t": 1.0, "event": "epoch", "epoch": 0})
        assert eng.runs.blocker(second) is None
        first.metrics = type(first.metrics)()
        first.wanted = False                # the user did not launch fold 0: do not wait for it
        assert eng.runs.blocker(second) is None
    finally:
        eng.close()
