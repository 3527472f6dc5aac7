"""The Slurm backend against a real one-node cluster (tests/slurm_cluster.sh): runs go
through sbatch, a scancel'ed job and a job hitting its time limit carry on with --resume
without counting a restart, a restarted console re-adopts its jobs and never submits twice."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from console.engine.core import Engine
from engine_helpers import actions, calls, poll_until, run_state, use_fake_trainer
from slurm_helpers import (no_leftover_jobs, slurm_cluster, slurm_experiment,  # noqa: F401
                           squeue_names)

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster", "no_leftover_jobs")]


def _record(run_dir) -> dict:
    return json.loads((run_dir / "slurm-job.json").read_text())


def _ends(run_dir) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == "end"]


def test_scancelled_job_is_resubmitted_with_resume_and_no_restart(tmp_path, monkeypatch):
    use_fake_trainer(monkeypatch, tmp_path, {"2d/0": [{"rate": 0.6, "epochs": 30},
                                                      {"rate": 0.02}]})
    exp = slurm_experiment(tmp_path, folds=(0,), epochs=30, pipeline={
        "evaluate": False, "find_best": False, "postprocess": False, "predict_test": False},
        slurm={"job_name_prefix": "fwb-"})
    engine = Engine(exp)
    try:
        fold = engine.runs["2d/0"]
        poll_until(engine, lambda s: fold.metrics.epoch is not None and fold.metrics.epoch >= 2,
                   timeout=120)
        first = fold.handle.job_id
        subprocess.run(["scancel", first], check=True)          # someone else's scancel
        snap = poll_until(engine, lambda s: s.finished, timeout=120, every=0.2)
        assert run_state(snap, "2d/0") == "completed"
        assert fold.total_restarts == 0 and "requeue" in actions(engine, "2d/0")
        argvs = [c["argv"] for c in calls(fold.job.run_dir)]
        assert len(argvs) == 2 and "--resume" not in argvs[0] and "--resume" in argvs[1]
        assert _ends(fold.job.run_dir)[0]["status"] == "stopped"   # checkpointed on SIGTERM
        assert _record(fold.job.run_dir)["previous"] == [first]
    finally:
        engine.close()


def test_time_limit_checkpoints_and_resubmits_without_a_restart(tmp_path, monkeypatch):
    # --time=1 is Slurm's minimum; SIGUSR2 50 s before it arrives within the controller's
    # ~30 s check. The first attempt would take 60 s; the second finishes quickly.
    use_fake_trainer(monkeypatch, tmp_path, {"2d/0": [{"rate": 3.0, "epochs": 20},
                                                      {"rate": 0.02}]})
    exp = slurm_experiment(tmp_path, folds=(0,), epochs=20, pipeline={
        "evaluate": False, "find_best": False, "postprocess": False, "predict_test": False},
        slurm={"job_name_prefix": "fwc-", "time_limit": "1", "checkpoint_before_s": 50},
        watchdog={"stall_timeout_s": 120})
    script = (tmp_path / "results" / "t" / "2d" / "fold_0")
    engine = Engine(exp)
    try:
        snap = poll_until(engine, lambda s: s.finished, timeout=150, every=0.3)
        fold = engine.runs["2d/0"]
        assert run_state(snap, "2d/0") == "completed", fold.message
        first_end = _ends(script)[0]
        # SIGUSR2 ahead of the limit (or, had it come before the trainer was listening,
        # Slurm's own SIGTERM at the limit): checkpointed either way.
        assert first_end["status"] == "stopped"
        assert first_end["stop_cause"] in ("timeout", "signal")
        assert fold.total_restarts == 0
        argvs = [c["argv"] for c in calls(script)]
        assert len(argvs) == 2 and "--resume" in argvs[1]
        requeue = [d for d in engine.decisions.recent if d.action == "requeue"]
        assert len(requeue) == 1 and "timeout" in requeue[0].reason
        assert "--signal=B:USR2@50" in (script / "slurm-job.sh").read_text()
    finally:
        engine.close()


def test_killed_console_readopts_jobs_and_never_submits_twice(tmp_path, monkeypatch):
    use_fake_trainer(monkeypatch, tmp_path, {"*": {"rate": 0.5, "epochs": 12}})
    exp = slurm_experiment(tmp_path, folds=(0, 1), epochs=12, pipeline={
        "evaluate": False, "find_best": False, "postprocess": False, "predict_test": False},
        slurm={"job_name_prefix": "fwd-"})
    console = subprocess.Popen([sys.executable, "-m", "console.clients.cli", "up", "--headless",
                                str(exp)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    state = tmp_path / "results" / "t" / "console" / "state.json"
    try:
        folds = [tmp_path / "results" / "t" / "2d" / f"fold_{k}" for k in (0, 1)]

        def submitted():
            try:
                runs = json.loads(state.read_text())["runs"]
            except (OSError, ValueError):
                return False
            return all(runs.get(f"2d/{k}", {}).get("job_id") for k in (0, 1))
        deadline = time.monotonic() + 120
        while not submitted():
            assert console.poll() is None, console.stderr.read()
            assert time.monotonic() < deadline, "the console never submitted both folds"
            time.sleep(0.2)
    finally:
        console.kill()                               # no chance to clean up
        console.wait()
    ids = {k: _record(f)["job_id"] for k, f in zip((0, 1), folds)}
    restarted = time.time()
    engine = Engine(exp)
    try:
        ours = lambda: [d for d in engine.decisions.recent if d.t >= restarted]  # noqa: E731
        adopted = [d for d in ours() if d.action == "adopt"]
        assert {d.run_key for d in adopted} >= {"2d/0", "2d/1"} or all(
            calls(f) for f in folds)      # a fold may already have finished meanwhile
        snap = poll_until(engine, lambda s: s.finished, timeout=150, every=0.2)
        assert snap.succeeded
        for k, f in zip((0, 1), folds):
            assert len(calls(f)) == 1, f"fold {k} ran twice"
            assert _record(f)["job_id"] == ids[k] and _record(f)["previous"] == []
        assert not [d for d in ours() if d.action == "launch" and d.run_key.startswith("2d/")]
    finally:
        engine.close()


def test_console_killed_between_sbatch_and_saving_finds_the_job_by_name(tmp_path, monkeypatch):
    """The job id never reached slurm-job.json (nor state.json): the unique job name finds it."""
    from console.backends.base import LaunchSpec
    from console.kinds.jobs import build_jobs
    from console.backends.slurm import queries
    from console.backends.slurm.backend import SlurmBackend
    from contracts.experiment import load_experiment
    use_fake_trainer(monkeypatch, tmp_path, {"*": {"then": "hang"}})
    exp = load_experiment(slurm_experiment(tmp_path, folds=(0,),
                                           slurm={"job_name_prefix": "fwe-"}))
    job = next(j for j in build_jobs(exp) if j.key == "2d/0")
    from engine_helpers import FAKE
    argv = [sys.executable, str(FAKE)] + job.argv(exp.source)
    real_run = queries.run

    def sbatch_then_die(cmd, timeout=30.0):
        out = real_run(cmd, timeout)
        if cmd[0] == "sbatch":
            raise KeyboardInterrupt("console killed right after sbatch")
        return out
    monkeypatch.setattr(queries, "run", sbatch_then_die)
    with pytest.raises(KeyboardInterrupt):
        SlurmBackend(exp).submit(LaunchSpec(job.key, argv, job.run_dir, {}, needs_gpu=True, fold=True))
    monkeypatch.setattr(queries, "run", real_run)
    assert _record(job.run_dir)["job_id"] is None                 # only the intent was saved
    again = SlurmBackend(exp)
    handle = again.submit(LaunchSpec(job.key, argv, job.run_dir, {}, needs_gpu=True, fold=True))
    try:
        assert handle.adopted and handle.job_id
        mine = [r for r in squeue_names("fwe-") if r[2] in ("PENDING", "RUNNING")]
        assert [r[0] for r in mine] == [handle.job_id]            # one job, not two
        assert _record(job.run_dir)["job_id"] == handle.job_id
    finally:
        subprocess.run(["scancel", handle.job_id])


def test_foldwatch_status_and_stop_without_a_console(tmp_path, monkeypatch, capsys):
    """`foldwatch status` shows the job; `foldwatch stop` adopts it by id and stops it
    gracefully (scancel --signal=TERM): checkpointed, stopped, not resubmitted."""
    from console.clients.cli.main import main
    use_fake_trainer(monkeypatch, tmp_path, {"*": {"rate": 0.5, "epochs": 60}})
    exp = slurm_experiment(tmp_path, folds=(0,), epochs=60, pipeline={
        "evaluate": False, "find_best": False, "postprocess": False, "predict_test": False},
        slurm={"job_name_prefix": "fwf-"})
    engine = Engine(exp)
    fold = engine.runs["2d/0"]
    try:
        poll_until(engine, lambda s: fold.metrics.epoch is not None, timeout=120)
        job_id = fold.handle.job_id
    finally:
        engine.close()                                 # the job keeps running
    capsys.readouterr()
    assert main(["status", str(exp), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    (view,) = [r for r in status["runs"] if r["key"] == "2d/0"]
    assert view["job"]["job_id"] == job_id and view["job"]["state"] == "RUNNING"
    assert status["cluster"]["partition"] == "default"
    assert main(["stop", str(exp)]) == 0
    assert [r for r in squeue_names("fwf-") if r[2] in ("PENDING", "RUNNING")] == []
    ends = _ends(fold.job.run_dir)
    assert ends[-1]["status"] == "stopped" and ends[-1]["stop_cause"] == "signal"
    saved = json.loads((tmp_path / "results" / "t" / "console" / "state.json").read_text())
    assert saved["runs"]["2d/0"]["state"] == "stopped" and len(calls(fold.job.run_dir)) == 1


def test_two_consoles_share_one_experiment_on_slurm(tmp_path, monkeypatch):
    """Two real consoles (headless processes) on one results folder with disjoint --runs:
    each submits only its folds, every run (stages too) is one sbatch job run exactly once,
    both consoles end succeeded, `foldwatch status` shows it all."""
    use_fake_trainer(monkeypatch, tmp_path, {"*": {"rate": 0.1}})
    exp = slurm_experiment(tmp_path, folds=(0, 1), epochs=3, slurm={"job_name_prefix": "fwg-"})
    cmd = [sys.executable, "-m", "console.clients.cli", "up", "--headless", str(exp), "--runs"]
    consoles = [subprocess.Popen(cmd + [runs], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True) for runs in ("2d/0", "2d/1")]
    try:
        outs = [c.communicate(timeout=240)[0] for c in consoles]
    finally:
        for c in consoles:
            if c.poll() is None:
                c.kill()
    assert [c.returncode for c in consoles] == [0, 0], outs
    lay = tmp_path / "results" / "t"
    dirs = [lay / "stages" / s for s in ("plan", "preprocess-2d", "crossval-2d", "find-best",
                                         "predict")] + [lay / "2d" / f"fold_{k}" for k in (0, 1)]
    for run_dir in dirs:
        (call,) = calls(run_dir)                         # exactly once, stages included
        rec = _record(run_dir)
        # ... as a Slurm job: id recorded, the script exec'd there, GPUs left to gres
        assert rec["previous"] == [] and rec["job_name"].startswith("fwg-t-")
        assert call["env"]["SLURM_JOB_ID"] == rec["job_id"]
        assert call["env"]["CUDA_VISIBLE_DEVICES"] in (None, "")
        assert f"foldwatch: job {rec['job_id']} on" in (run_dir / "stderr.log").read_text()
    status = subprocess.run([sys.executable, "-m", "console.clients.cli", "status", str(exp), "--json"],
                            capture_output=True, text=True, check=True)
    snap = json.loads(status.stdout)
    assert {r["state"] for r in snap["runs"]} == {"completed"} and snap["cluster"]["cpus_total"]
    claims = [json.loads(line) for f in (lay / "console" / "consoles").glob("*/events.jsonl")
              for line in f.read_text().splitlines()]
    launched = sorted(e["run"] for e in claims if e.get("action") == "launch")
    assert launched == sorted(["2d/0", "2d/1", "plan", "preprocess-2d", "crossval-2d",
                               "find-best", "predict"])


def test_pending_job_shows_its_reason_and_is_never_stalled(tmp_path, monkeypatch):
    """A job the cluster holds back (here: --begin in an hour) is PENDING with Slurm's reason
    in the view, is not 'stalled' however long it waits, and a Slurm outage is shown, not
    fatal."""
    use_fake_trainer(monkeypatch, tmp_path)
    exp = slurm_experiment(tmp_path, folds=(0,), pipeline={
        "evaluate": False, "find_best": False, "postprocess": False, "predict_test": False},
        slurm={"job_name_prefix": "fwh-", "extra_sbatch": ["--begin=now+3600"]},
        watchdog={"stall_timeout_s": 1})
    engine = Engine(exp)
    try:
        snap = poll_until(engine, lambda s: s.runs[0].job and s.runs[0].job.get("reason"),
                          timeout=60)
        plan = snap.runs[0]
        assert plan.key == "plan" and plan.device == "queue"
        assert plan.job["state"] == "PENDING" and plan.job["reason"] == "BeginTime"
        assert plan.message.startswith(f"job {plan.job['job_id']} PENDING (BeginTime), ")
        time.sleep(2.5)                                   # > stall_timeout_s
        snap = engine.poll()
        assert snap.runs[0].state == "starting" and "stall" not in actions(engine, "plan")
        # Slurm's commands failing (a broken slurm.conf here): said in the view, not fatal,
        # and the run keeps its job.
        bad = tmp_path / "broken-slurm.conf"
        bad.write_text("NoSuchKey=1\n")
        monkeypatch.setenv("SLURM_CONF", str(bad))
        engine.backend.refresh(force=True)
        engine.backend._partition_at = None
        snap = engine.poll()
        assert snap.cluster["error"] and "failed" in snap.cluster["error"]
        assert snap.runs[0].state == "starting" and engine.runs["plan"].handle is not None
    finally:
        engine.close()


def test_a_job_the_cluster_refuses_fails_with_sbatch_s_reason(tmp_path, monkeypatch):
    """A partition that does not exist: the run fails at once with sbatch's own words and
    what to fix, instead of being resubmitted forever."""
    use_fake_trainer(monkeypatch, tmp_path)
    exp = slurm_experiment(tmp_path, folds=(0,), slurm={"job_name_prefix": "fwi-",
                                                         "partition": "nosuch"})
    engine = Engine(exp)
    try:
        snap = poll_until(engine, lambda s: s.runs[0].state == "failed", timeout=60)
        msg = snap.runs[0].message
        assert "invalid partition" in msg.lower() and "slurm: section" in msg
        assert not squeue_names("fwi-")
    finally:
        engine.close()


def test_nnunet_predictions_ask_slurm_for_a_gpu(tmp_path, monkeypatch):
    """The job graph is the trainer kind's: nnU-Net's predict-<cfg>-fold<k> jobs (unknown to
    foldwatch's own graph) are submitted with --gres, its plain stages without."""
    import yaml
    from contracts.jsonio import EventWriter
    monkeypatch.setenv("FOLDWATCH_NO_NVML", "1")
    roots = {k: tmp_path / k for k in ("raw", "preprocessed", "results")}
    (roots["raw"] / "Dataset901_Tiny" / "imagesTs").mkdir(parents=True)
    path = slurm_experiment(tmp_path, folds=(0,), slurm={"gpus_per_run": 1},
                            pipeline={"find_best": False, "postprocess": False})
    data = yaml.safe_load(path.read_text())
    data.update(trainer="nnunetv2", nnunet={"dataset": 901, "plan": False,
                                            **{k: str(v) for k, v in roots.items()}})
    data.pop("dataset")
    path.write_text(yaml.safe_dump(data))
    from contracts.experiment import load_experiment
    fold = load_experiment(path).layout.fold_dir("2d", 0)
    with EventWriter(fold / "metrics.jsonl") as w:               # the fold is trained already
        w.write("start", configuration="2d", fold=0, pid=1, host="x")
        w.write("end", status="completed", error=None, exit_code=0)
    eng = Engine(path)
    try:
        script = eng.runs["predict-2d-fold0"].job.run_dir / "slurm-job.sh"
        poll_until(eng, lambda s: script.exists(), timeout=60)
        assert "#SBATCH --gres=gpu:1" in script.read_text()
        ensemble = eng.runs["ensemble"].job.run_dir / "slurm-job.sh"
        if ensemble.exists():
            assert "--gres" not in ensemble.read_text()
    finally:
        eng.stop_all()
        eng.close()
