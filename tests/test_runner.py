"""console.runner with small real programs: retry with fewer workers, stop forwarding,
the run lock, --require and --skip."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from contracts import exitcodes
from contracts.jsonio import iter_jsonl
from contracts.runlock import RunLock
from supervisor_helpers import wait_for

REPO = Path(__file__).resolve().parents[1]


def runner(run_dir: Path, *args: str, env: dict | None = None, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "console.runner", "--run-dir", str(run_dir),
                             *args], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO),
                                                    **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def log(run_dir: Path) -> list[dict]:
    return list(iter_jsonl(run_dir / "metrics.jsonl"))


# dies like nnU-Net's data loader while nnUNet_n_proc_DA > 1, then trains
FLAKY = """
import os, sys
n = int(os.environ["nnUNet_n_proc_DA"])
print("workers", n, "args", sys.argv[1:], flush=True)
if n > 1:
    print("RuntimeError: One or more background workers are no longer alive. Exiting.", file=sys.stderr)
    sys.exit(1)
"""


def test_workers_died_is_retried_with_fewer_workers_and_resume_args(tmp_path):
    p = runner(tmp_path, "--stage", "fold", "--workers-env", "nnUNet_n_proc_DA",
               "--retry-arg=--c", "--", sys.executable, "-c", FLAKY, env={"nnUNet_n_proc_DA": "8"})
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert out.splitlines() == ["workers 8 args []", "workers 4 args ['--c']",
                                "workers 2 args ['--c']", "workers 1 args ['--c']"]
    ev = log(tmp_path)
    assert [e["event"] for e in ev] == ["start", "warning", "warning", "warning", "end"]
    assert "nnUNet_n_proc_DA=4" in ev[1]["message"] and ev[-1]["status"] == "completed"


SLEEPER = """
import signal, sys, time
def stop(*a):
    print("saving", flush=True); sys.exit(0)
signal.signal(signal.SIGTERM, stop)
print("ready", flush=True)
time.sleep(60)
"""


def test_sigterm_is_passed_on_and_ends_as_stopped(tmp_path):
    p = runner(tmp_path, "--configuration", "c", "--fold", "0", "--", sys.executable, "-c",
               SLEEPER)
    assert p.stdout.readline().strip() == "ready"
    p.send_signal(signal.SIGTERM)               # to the runner only: it must pass it on
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0 and "saving" in out
    end = log(tmp_path)[-1]
    assert end["status"] == "stopped" and end["reason"] == "stopped" and end["stop_cause"] == "signal"


def test_a_held_run_folder_exits_busy(tmp_path):
    with RunLock(tmp_path, role="someone"):
        p = runner(tmp_path, "--stage", "x", "--", sys.executable, "-c", "print(1)")
        out, err = p.communicate(timeout=30)
    assert p.returncode == exitcodes.BUSY and "already in use" in err
    assert not (tmp_path / "metrics.jsonl").exists()


def test_require_and_skip(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    p = runner(a, "--stage", "find-best", f"--require={tmp_path}/none.pth=fold 2d/3 is unfinished",
               "--", "false")
    p.communicate(timeout=30)
    end = log(a)[-1]
    assert p.returncode == 2 and end["message"] == "fold 2d/3 is unfinished" and end["reason"] == "usage"
    p = runner(b, "--stage", "predict", "--skip", "not chosen")
    p.communicate(timeout=30)
    end = log(b)[-1]
    assert p.returncode == 0 and end["status"] == "completed" and end["message"] == "not chosen"


@pytest.mark.parametrize("how", ["flag", "env"])
def test_a_progress_bar_without_newlines_keeps_the_run_alive(tmp_path, how):
    bar = ("import sys, time\nfor i in range(30):\n    sys.stderr.write(f'\\rplanning {i}/30')\n"
           "    sys.stderr.flush(); time.sleep(0.1)\nprint()\n")
    flag = ["--heartbeat-s", "0.5"] if how == "flag" else []
    p = runner(tmp_path, "--stage", "plan", *flag, "--", sys.executable, "-c", bar,
               env={"FOLDWATCH_HEARTBEAT_S": "0.5" if how == "env" else "600"})
    p.communicate(timeout=60)
    beats = [e for e in log(tmp_path) if e["event"] == "heartbeat"]
    assert p.returncode == 0 and len(beats) >= 2


def test_unset_workers_start_from_nnunets_default(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "nnUNet_n_proc_DA"}
    p = subprocess.Popen([sys.executable, "-m", "console.runner", "--run-dir", str(tmp_path),
                          "--stage", "s", "--workers-env", "nnUNet_n_proc_DA", "--",
                          sys.executable, "-c", FLAKY.replace('int(os.environ["nnUNet_n_proc_DA"])',
                                                              'int(os.environ.get("nnUNet_n_proc_DA", 99))')],
                         cwd=REPO, env={**env, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                         text=True)
    out, _ = p.communicate(timeout=60)
    first_retry = out.splitlines()[1]
    assert p.returncode == 0 and first_retry.startswith(f"workers {min(12, os.cpu_count()) // 2} ")


# -- a kill between a checkpoint and its announcement is repaired on resume ----------------
PROGRAMS = REPO / "tests" / "runner_programs.py"
WAIT_S = 120.0
NNUNET_FOLD = ("nnUNet_results", "Dataset901_Tiny", "nnUNetTrainer__nnUNetPlans__2d", "fold_1")


def has(run_dir: Path, event: str, **fields) -> bool:
    return (run_dir / "metrics.jsonl").exists() and any(
        e["event"] == event and all(e.get(k) == v for k, v in fields.items())
        for e in log(run_dir))


def nnunet_attempt(tmp: Path, free: int) -> subprocess.Popen:
    """The runner as the nnunetv2 kind starts it, on a program writing nnU-Net's log."""
    folder = tmp.joinpath(*NNUNET_FOLD)
    pattern = str(tmp / "nnUNet_results" / "Dataset901_*" / NNUNET_FOLD[2] / "fold_1")
    return runner(tmp / "run", "--configuration", "2d", "--fold", "1", "--epochs", "5",
                  "--metrics", "nnunet", "--nnunet-dir", pattern, "--", sys.executable,
                  str(PROGRAMS), "nnunet", str(folder), "5", str(free), str(tmp / "gates"),
                  start_new_session=True)


def summary(events: list[dict]) -> list[tuple]:
    return [(e["event"], e.get("kind"), e.get("epoch"), e.get("replayed"), e.get("resumed_from"))
            for e in events if e["event"] in ("start", "checkpoint", "epoch")]


@pytest.mark.parametrize("how", ["kill", "stop-past-grace"])
def test_a_checkpoint_nnunet_logged_but_the_killed_runner_never_read_is_replayed(tmp_path, how):
    """The whole group SIGKILLed after nnU-Net saved and logged a checkpoint, before the
    runner read the line (held here with SIGSTOP): the next attempt's runner writes the
    checkpoint and the epoch it completes before its `start`, which resumes from it.
    `stop-past-grace`: a stop whose save the runner never read (the watchdog's SIGKILL
    after grace_period_s)."""
    run, gates = tmp_path / "run", tmp_path / "gates"
    gates.mkdir()
    (tmp_path / NNUNET_FOLD[0]).mkdir()
    p = nnunet_attempt(tmp_path, free=2)     # epochs 0 and 1, then held inside epoch 2
    wait_for(lambda: has(run, "epoch", epoch=1) and has(run, "checkpoint", kind="latest", epoch=2),
             WAIT_S, what="epoch 1 and checkpoint 2 announced")
    os.kill(p.pid, signal.SIGSTOP)           # the runner reads nothing more
    training_log = next(tmp_path.joinpath(*NNUNET_FOLD).glob("training_log_*.txt"))
    if how == "kill":
        (gates / "2").touch()                # epoch 2 ends, is saved, epoch 3 begins
        wait_for(lambda: "Current learning rate: 0.00400" in training_log.read_text(),
                 WAIT_S, what="epoch 3 begun")
    else:
        os.killpg(p.pid, signal.SIGTERM)     # the runner is stopped: only nnU-Net acts on it
        wait_for(lambda: "foldwatch stopped" in training_log.read_text(), WAIT_S,
                 what="the stop's save")
    os.killpg(p.pid, signal.SIGKILL)
    p.communicate(timeout=60)
    before = log(run)
    assert [e for e in before if e["event"] == "checkpoint"][-1]["epoch"] == 2
    assert before[-1]["event"] != "end"

    p = nnunet_attempt(tmp_path, free=99)    # resumed with --c: trains to the end
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    after = log(run)[len(before):]
    if how == "kill":
        replayed = [("checkpoint", "latest", 3, True, None), ("epoch", None, 2, True, None)]
        resumed = 3
    else:       # saved mid-epoch 2: epoch 2 is redone, nothing more to announce
        replayed, resumed = [("checkpoint", "latest", 2, True, None)], 2
    assert summary(after)[:len(replayed) + 1] == replayed + [("start", None, None, None, resumed)]
    start = next(e for e in after if e["event"] == "start")
    assert start["attempt"] == 2
    epochs = [e["epoch"] for e in log(run) if e["event"] == "epoch"]
    assert epochs == [0, 1, 2, 3, 4], "every epoch announced once, in order"
    assert after[-1]["status"] == "completed"
    if how == "kill":       # the replayed epoch carries what nnU-Net logged for it
        e2 = next(e for e in after if e["event"] == "epoch" and e["epoch"] == 2)
        assert (e2["train_loss"], e2["val_loss"], e2["val_dice"]) == (-0.3, -0.35, 0.6)


def test_a_graceful_stop_announces_its_checkpoint_itself(tmp_path):
    """SIGTERM to the group: nnU-Net saves mid-epoch and exits 0, the runner reads the line
    before its `end`; the resume replays nothing and continues at the redone epoch."""
    run, gates = tmp_path / "run", tmp_path / "gates"
    gates.mkdir()
    p = nnunet_attempt(tmp_path, free=2)
    wait_for(lambda: has(run, "epoch", epoch=1), WAIT_S, what="epoch 1 announced")
    os.killpg(p.pid, signal.SIGTERM)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    first = log(run)
    assert summary(first)[-1] == ("checkpoint", "latest", 2, None, None)
    assert first[-1]["status"] == "stopped"
    p = nnunet_attempt(tmp_path, free=99)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    events = log(run)
    assert not [e for e in events if e.get("replayed")]
    assert [e["resumed_from"] for e in events if e["event"] == "start"] == [None, 2]
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == [0, 1, 2, 3, 4]


def test_a_command_checkpoint_the_killed_runner_never_saw_is_replayed(tmp_path):
    """trainer: command with a checkpoint glob: the newest file written after the last
    announced checkpoint is announced before the resumed `start`, with the runner's count
    of epochs done."""
    run, ckpts, gates = tmp_path / "run", tmp_path / "ckpt", tmp_path / "gates"
    gates.mkdir()

    def attempt(free: int, *resume: str) -> subprocess.Popen:
        return runner(run, "--configuration", "c", "--fold", "0", "--metrics", "pattern",
                      "--pattern", r"Epoch (?P<epoch>\d+)/\d+ train_loss=(?P<loss>[\d.]+)",
                      "--first-epoch", "1", "--checkpoints", str(ckpts / "checkpoint_epoch*.pth"),
                      "--", sys.executable, str(PROGRAMS), "command", str(ckpts), "4", str(free),
                      str(gates), *resume, start_new_session=True)

    p = attempt(1)        # epoch 0 saved, epoch 1 printed, its save held
    first = str(ckpts / "checkpoint_epoch1.pth")
    wait_for(lambda: has(run, "checkpoint", path=first) and has(run, "epoch", epoch=1), WAIT_S,
             what="checkpoint 1 and epoch 1 announced")
    os.kill(p.pid, signal.SIGSTOP)
    (gates / "save1").touch()
    wait_for(lambda: (ckpts / "checkpoint_epoch2.pth").exists(), WAIT_S,
             what="checkpoint 2 saved")
    os.killpg(p.pid, signal.SIGKILL)
    p.communicate(timeout=60)
    before = log(run)
    assert [e["path"] for e in before if e["event"] == "checkpoint"] == [first]

    p = attempt(99, str(ckpts / "checkpoint_epoch2.pth"))
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    after = log(run)[len(before):]
    assert [e["event"] for e in after[:2]] == ["checkpoint", "start"]
    assert {k: after[0][k] for k in ("kind", "epoch", "path", "replayed")} == {
        "kind": "latest", "epoch": 2, "path": str(ckpts / "checkpoint_epoch2.pth"),
        "replayed": True}
    assert after[1]["resumed_from"] == 2 and after[1]["attempt"] == 2
    assert [e["epoch"] for e in after if e["event"] == "epoch"] == [2, 3]


def test_a_retry_with_fewer_workers_announces_the_saved_epoch_the_dead_process_left(tmp_path):
    """nnU-Net died at the start of epoch 2 (its augmentation workers), after epoch 1's save
    and before the `Epoch 2` line that would have announced epoch 1: the runner announces it
    from the old log before the retry (--c, fewer workers) goes on from epoch 2."""
    p = runner(tmp_path / "run", "--configuration", "2d", "--fold", "1", "--metrics", "nnunet",
               "--nnunet-dir", str(tmp_path.joinpath(*NNUNET_FOLD)),
               "--workers-env", "nnUNet_n_proc_DA", "--retry-arg=--c", "--", sys.executable,
               str(PROGRAMS), "nnunet", str(tmp_path.joinpath(*NNUNET_FOLD)), "5", "99",
               str(tmp_path), env={"nnUNet_n_proc_DA": "2", "FAKE_WORKERS_DIE_AT": "2"})
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    events = log(tmp_path / "run")
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == [0, 1, 2, 3, 4]
    names = [(e["event"], e.get("epoch")) for e in events]
    assert names.index(("epoch", 1)) < names.index(("warning", None))
