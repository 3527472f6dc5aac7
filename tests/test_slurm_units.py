"""The Slurm backend's pure parts, without a cluster: the slurm: schema and its errors, the
batch script, parsing of squeue/scontrol/sacct/sinfo output as Slurm 22.05 prints it, and
the rule that tells a cluster stop from a user stop or a crash."""

from __future__ import annotations

import subprocess

import pytest

from console.backends.select import job_note
from console.backends.slurm import queries as q
from console.backends.slurm.sbatch import batch_script, job_name, sbatch_options
from console.engine.rules import cluster_stop
from contracts.errors import ConfigError
from contracts.experiment import parse_experiment
from contracts.slurm_settings import Slurm, slurm_time_seconds

BASE = {"experiment": "x", "dataset": "d", "configurations": {"2d": {}}}


@pytest.mark.parametrize("text,seconds", [("1", 60), ("90", 5400), ("1:30", 90),
                                          ("4:00:00", 14400), ("2-0", 172800),
                                          ("1-02:03", 93780), ("1-0:0:5", 86405)])
def test_slurm_time_limits(text, seconds):
    assert slurm_time_seconds(text) == seconds


@pytest.mark.parametrize("slurm,message", [
    ({"time_limit": "soon"}, "slurm.time_limit: expected a Slurm time limit"),
    ({"time_limit": "0"}, "smallest time limit is 1 minute"),
    ({"time_limit": "1", "checkpoint_before_s": 60}, "must be shorter than time_limit"),
    ({"extra_sbatch": ["--job-name=mine"]}, "--job-name is set by foldwatch"),
    ({"extra_sbatch": ["constraint=a100"]}, "one option starting with '-'"),
    ({"mem_per_run": "lots"}, "slurm.mem_per_run: expected a size like 32G"),
    ({"gpus_per_run": -1}, "slurm.gpus_per_run"),
    ({"partiton": "gpu"}, "slurm.partiton: unknown key"),
])
def test_bad_slurm_sections_are_named(slurm, message):
    with pytest.raises(ConfigError) as e:
        parse_experiment({**BASE, "backend": "slurm", "slurm": slurm})
    assert message in str(e.value)


def test_same_file_runs_locally_or_on_slurm():
    local = parse_experiment({**BASE, "slurm": {"partition": "gpu"}})
    slurm = parse_experiment({**BASE, "backend": "slurm", "slurm": {"partition": "gpu"}})
    assert (local.backend, slurm.backend) == ("local", "slurm")
    assert local.model_dump(exclude={"backend"}) == slurm.model_dump(exclude={"backend"})


def test_signal_lead_defaults_to_a_fifth_of_short_limits():
    assert Slurm().signal_lead_s == 300
    assert Slurm(time_limit="10").signal_lead_s == 120
    assert Slurm(time_limit="1").signal_lead_s == 12
    assert Slurm(time_limit="1", checkpoint_before_s=50).signal_lead_s == 50


def test_batch_script_runs_the_trainer_command_and_bash_accepts_it(tmp_path):
    cfg = Slurm(partition="gpu", account="lab", qos="normal", gpus_per_run=1, gpu_type="a100",
                extra_sbatch=["--constraint=a100"], time_limit="2:00:00")
    name = job_name(cfg, "demo", "3d_fullres/0", token="abc123")
    assert name == "fw-demo-3d_fullres_0-abc123"
    opts = sbatch_options(cfg, name=name, run_dir=tmp_path / "fold 0", workdir=tmp_path,
                          needs_gpu=True)
    argv = ["/usr/bin/python3", "-m", "trainer", "train", "--experiment", "/x/my exp.yaml",
            "--fold", "0"]
    text = batch_script(argv, opts, {"FOLDWATCH_CPU_THREADS": "4", "CUDA_VISIBLE_DEVICES": "",
                                     "A": "it's"}, fold=True, key="3d_fullres/0")
    for line in ("#SBATCH --partition=gpu", "#SBATCH --account=lab", "#SBATCH --qos=normal",
                 "#SBATCH --gres=gpu:a100:1", "#SBATCH --signal=B:USR2@300",
                 "#SBATCH --open-mode=append", "#SBATCH --no-requeue",
                 f"#SBATCH --output={tmp_path}/fold 0/stdout.log", "#SBATCH --constraint=a100",
                 "#SBATCH --time=2:00:00", "trap '' USR2"):
        assert line in text.splitlines()
    assert "CUDA_VISIBLE_DEVICES" not in text             # left to Slurm's gres
    assert text.rstrip().endswith('exec "${cmd[@]}"')
    # bash parses it, and the argument list survives quoting exactly.
    probe = text.replace('exec "${cmd[@]}"', 'printf "%s\\n" "${cmd[@]}"; echo "$A"; '
                                             'echo "$FOLDWATCH_CPU_THREADS"')
    out = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=True,
                         env={"PATH": "/usr/bin:/bin", "SLURM_CPUS_PER_TASK": "6",
                              "SLURM_RESTART_COUNT": "1"}).stdout.splitlines()
    assert out == argv + ["--resume", "it's", "6"]      # a Slurm requeue resumes


def test_stage_without_gpu_asks_for_no_gres(tmp_path):
    opts = sbatch_options(Slurm(gpus_per_run=2), name="n", run_dir=tmp_path, workdir=tmp_path,
                          needs_gpu=False)
    assert not [o for o in opts if o.startswith("--gres")]


def test_parse_squeue_scontrol_sacct():
    jobs = q.parse_squeue("12|fw-demo-2d_0-abc|PENDING|Resources||2026-11-22T17:27:13|"
                          "N/A|gpu|(null)\n"
                          "13|fw-demo-2d_1-def|RUNNING|None|node7|2026-11-22T17:27:13|"
                          "2026-11-22T17:28:13|gpu|fw\n"
                          "garbage line\n")
    assert jobs["12"].state == "PENDING" and jobs["12"].reason == "Resources"
    assert jobs["12"].active and jobs["12"].started is None and jobs["12"].nodes is None
    assert jobs["13"].nodes == "node7" and jobs["13"].started - jobs["13"].submitted == 60
    line = ("JobId=13 JobName=fw-demo-2d_1-def UserId=root(0) GroupId=root(0) "
            "JobState=TIMEOUT Reason=TimeLimit Dependency=(null) Requeue=0 Restarts=0 "
            "BatchFlag=1 Reboot=0 ExitCode=0:15 RunTime=00:01:02 TimeLimit=00:01:00 "
            "SubmitTime=2026-11-22T17:27:13 StartTime=2026-11-22T17:27:14 "
            "Partition=debug NodeList=vm BatchHost=vm NumNodes=1 Socks/Node=* "
            "NtasksPerN:B:S:C=0:0:*:* Command=/r/my run/slurm-job.sh WorkDir=/r/my run "
            "Comment=fw StdOut=/r/my run/stdout.log")
    (info,) = q.parse_scontrol(line).values()
    assert (info.state, info.exit_code, info.nodes, info.comment) == ("TIMEOUT", -15, "vm", "fw")
    assert not info.active
    assert q.exit_code("2:0") == 2 and q.exit_code("0:9") == -9 and q.exit_code("") is None
    acct = q.parse_sacct("13|fw-demo|PREEMPTED|0:0|vm\n14|x|CANCELLED by 0|0:15|None\n")
    assert acct["13"].state == "PREEMPTED" and acct["14"].state == "CANCELLED"


def test_parse_sinfo_counts_free_gpus_on_usable_nodes():
    text = ("n1|gpu:a100:4(S:0-1)|gpu:a100:1(IDX:0)|16/48/0/64|mix|\n"
            "n2|gpu:a100:4|gpu:a100:0|0/64/0/64|idle|\n"
            "n3|gpu:a100:4|gpu:a100:0|0/0/64/64|drain|\n"
            "n1|gpu:a100:4(S:0-1)|gpu:a100:1(IDX:0)|16/48/0/64|mix|\n")   # n1 in 2 partitions
    info = q.parse_sinfo(text, "gpu")
    assert (info.gpus_free, info.gpus_total, info.cpus_idle, info.cpus_total) == (7, 12, 112, 192)
    assert (info.nodes_up, info.nodes) == (2, 3)


@pytest.mark.parametrize("end,ended_by,asked,queued,cause", [
    ({"status": "stopped", "stop_cause": "timeout"}, None, False, False, "timeout"),
    ({"status": "stopped", "stop_cause": "preempted"}, None, False, True, "preempted"),
    ({"status": "stopped", "stop_cause": "timeout"}, None, True, True, None),   # user asked
    ({"status": "stopped", "stop_cause": "signal"}, None, False, True, "signal"),  # scancel
    ({"status": "stopped", "stop_cause": "signal"}, None, False, False, None),  # local kill
    (None, "node_fail", False, True, "node_fail"),
    (None, "cancelled", False, True, "cancelled"),
    ({"status": "failed", "exit_code": 1}, None, False, True, None),           # a crash
    ({"status": "completed", "exit_code": 0}, None, False, True, None),
])
def test_cluster_stop_versus_user_stop_versus_crash(end, ended_by, asked, queued, cause):
    assert cluster_stop(end, ended_by, stop_requested=asked, queued_backend=queued) == cause


def test_job_note():
    assert job_note({"job_id": "12", "state": "PENDING", "reason": "Priority",
                     "queue_s": 190}) == "job 12 PENDING (Priority), 3m10s in queue"
    assert job_note({"job_id": "12", "state": "RUNNING", "node": "n7", "queue_s": 5}) == \
        "job 12 RUNNING on n7 (queued 5s)"


def test_a_local_devices_section_says_nothing_on_slurm(tmp_path, monkeypatch):
    """The same file with devices.gpus: [0, 2] on a GPU-less login node: no 'no GPU' notice,
    since the cluster's gres picks the GPUs (the engine is built without submitting)."""
    import shutil
    import yaml
    from console.engine.core import Engine
    from engine_helpers import cpu_sampler, write_experiment
    if not shutil.which("sbatch"):
        pytest.skip("sbatch is not installed (tests/slurm_cluster.sh installs it as root)")
    path = write_experiment(tmp_path, devices={"gpus": [0, 2]})
    data = yaml.safe_load(path.read_text())
    data["backend"] = "slurm"
    path.write_text(yaml.safe_dump(data))
    eng = Engine(path, sampler=cpu_sampler(), hold=True)
    try:
        assert not [n for n in eng.poll().notices if "GPU" in n]
    finally:
        eng.close()
    data["backend"] = "local"
    path.write_text(yaml.safe_dump(data))
    with Engine(path, sampler=cpu_sampler(), hold=True) as local:
        assert [n for n in local.poll().notices if "devices.gpus" in n]
