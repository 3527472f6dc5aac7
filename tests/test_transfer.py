"""`foldwatch pack` and `foldwatch import` on completed folds written by hand (tests/
transfer_fixture.py): what an archive holds, and every refusal leaves the experiment as it was:
a fold that has not completed, a flipped byte, an archive cut in half, another plan, other
splits, an existing fold without --replace, a running fold; --replace keeps the old folder;
a crash in the middle of an import is finished by the next one."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from console.clients.cli.main import main as foldwatch
from contracts import digests
from contracts.runlock import RunLock
from engine_helpers import REPO
from transfer_fixture import CASES, completed_fold, experiment
from system_helpers import small_disk as tmpfs


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` (but the import lock) with its digest: "nothing changed"."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "lock"} | {
        p.relative_to(folder).as_posix() + "/": "" for p in folder.rglob("*") if p.is_dir()}


def cli(*args, capsys=None) -> tuple[int, str]:
    rc = foldwatch([str(a) for a in args])
    if capsys is None:
        return rc, ""
    got = capsys.readouterr()
    return rc, got.out + got.err


@pytest.fixture
def machines(tmp_path):
    """bob trained folds 2 and 3 (and stopped 4); alice has planned the same experiment."""
    bob, alice = experiment(tmp_path / "bob"), experiment(tmp_path / "alice")
    completed_fold(bob, 2)
    completed_fold(bob, 3)
    completed_fold(bob, 4, ended="stopped")
    return bob, alice


def pack(bob: Path, runs: str, out: Path) -> Path:
    assert foldwatch(["pack", str(bob), "--runs", runs, "-o", str(out)]) == 0
    return out


def test_the_archive_is_a_tar_with_its_manifest_first_and_a_checksum_per_file(machines, tmp_path):
    bob, _ = machines
    out = pack(bob, "2d/2,2d/3", tmp_path / "folds.tar")
    with tarfile.open(out) as tar:
        names = tar.getnames()
        manifest = json.loads(tar.extractfile(names[0]).read())
        said = tar.extractfile(names[1]).read().decode().strip()
        assert hashlib.sha256(tar.extractfile(names[0]).read()).hexdigest() == said
        body = {n: tar.extractfile(n).read() for n in names[2:]}
    assert names[:2] == ["foldwatch-manifest.json", "foldwatch-manifest.json.sha256"]
    assert manifest["format"] == "foldwatch-folds" and manifest["trainer"] == "foldwatch"
    assert [r["key"] for r in manifest["runs"]] == ["2d/2", "2d/3"]
    assert manifest["runs"][0]["trained_on"] == "bob-ws" and manifest["runs"][0]["completed"]
    assert {f["name"]: f["sha256"] for f in manifest["files"]} == {
        n: hashlib.sha256(b).hexdigest() for n, b in body.items()}
    fold = {n.removeprefix("runs/2d/fold_2/") for n in names if n.startswith("runs/2d/fold_2/")}
    assert {"metrics.jsonl", "checkpoints/final.pt", "checkpoints/best.pt", "progress.png",
            "validation/summary.json", "validation/case_002.npz", "previews/"
            "epoch_0001_case_000.png"} <= fold
    # not the intermediate checkpoint, the lock, or the TensorBoard export
    assert not {"checkpoints/latest.pt", "run.lock", "tensorboard/events.out"} & fold
    plan = json.loads(body["context/plans/2d.json"])
    assert manifest["digests"]["plan"]["2d"] == digests.digest(plan)
    fp = json.loads(body["context/fingerprint.json"])
    assert manifest["digests"]["fingerprint"] == digests.digest(
        {k: v for k, v in fp.items() if k != "dataset"})
    # --all-checkpoints: every checkpoint
    more = pack(bob, "2d/2", tmp_path / "all.tar")
    assert "runs/2d/fold_2/checkpoints/latest.pt" not in tarfile.open(more).getnames()
    assert foldwatch(["pack", str(bob), "--runs", "2d/2", "-o", str(tmp_path / "all2.tar"),
                      "--all-checkpoints"]) == 0
    assert "runs/2d/fold_2/checkpoints/latest.pt" in tarfile.open(tmp_path / "all2.tar").getnames()


def test_pack_refuses_a_fold_that_has_not_completed_naming_what_is_missing(machines, tmp_path,
                                                                          capsys):
    bob, _ = machines
    rc, said = cli("pack", bob, "--runs", "2d/3,2d/4,2d/1", "-o", tmp_path / "x.tar",
                   capsys=capsys)
    assert rc == 2
    assert "2d/4 has not completed: its log ends `stopped` after 2 of 2 epochs" in said
    assert "no checkpoints/final.pt" in said and "validation lacks summary.json" in said
    assert "2d/1 has not completed: no run folder" in said
    assert "2d/3" not in said.split("Only completed")[0].replace("--runs 2d/4,2d/1", "")
    assert not list(tmp_path.glob("*.tar")) and not list(tmp_path.glob(".*.tmp"))
    rc, said = cli("pack", bob, "--runs", "2d/9", capsys=capsys)
    assert rc == 2 and "no such fold: 2d/9" in said


def test_round_trip_byte_for_byte_with_its_origin(machines, tmp_path, capsys):
    bob, alice = machines
    out = pack(bob, "2d/2,2d/3", tmp_path / "folds.tar")
    rc, said = cli("import", alice, out, capsys=capsys)
    assert rc == 0, said
    assert "imported 2d/2, 2d/3 from" in said and "trained on bob-ws" in said
    assert "no supervisor is running: the next `foldwatch up` picks" in said
    root_a, root_b = alice.parent / "results" / "lab", bob.parent / "results" / "lab"
    for k in (2, 3):
        got = snapshot(root_a / "2d" / f"fold_{k}")
        sent = snapshot(root_b / "2d" / f"fold_{k}")
        origin = json.loads((root_a / "2d" / f"fold_{k}" / "origin.json").read_text())
        assert got.pop("origin.json")
        for left_out in ("run.lock", "checkpoints/latest.pt", "tensorboard/",
                         "tensorboard/events.out"):
            sent.pop(left_out)
        assert got == sent
        assert origin["key"] == f"2d/{k}" and origin["trained_on"] == "bob-ws"
        assert origin["source"]["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert sorted(p.name for p in (root_a / "console" / "imports").iterdir()) == ["lock"]
    # the same archive again: nothing to do
    rc, said = cli("import", alice, out, capsys=capsys)
    assert rc == 0 and "imported from it already" in said


def test_damaged_archives_and_other_plans_are_refused_changing_nothing(machines, tmp_path,
                                                                       capsys):
    bob, alice = machines
    out = pack(bob, "2d/2,2d/3", tmp_path / "folds.tar")
    data = out.read_bytes()
    with tarfile.open(out) as tar:
        at = tar.getmember("runs/2d/fold_3/checkpoints/final.pt").offset_data + 777
    flipped = tmp_path / "flipped.tar"
    flipped.write_bytes(data[:at] + bytes([data[at] ^ 0x10]) + data[at + 1:])
    half = tmp_path / "half.tar"
    half.write_bytes(data[:len(data) // 2])
    carol = experiment(tmp_path / "carol", patch=(96, 160))
    completed_fold(carol, 2)
    other_plan = pack(carol, "2d/2", tmp_path / "carol.tar")
    dave = experiment(tmp_path / "dave", cases=CASES[:8] + ["case_100", "case_101"])
    completed_fold(dave, 1)
    other_data = pack(dave, "2d/1", tmp_path / "dave.tar")
    root = alice.parent / "results"
    (root / "lab" / "console" / "imports").mkdir(parents=True)
    before = snapshot(root)

    rc, said = cli("import", alice, flipped, capsys=capsys)
    assert rc == 2 and "runs/2d/fold_3/checkpoints/final.pt: its checksum differs" in said
    assert "copy it again" in said and "Nothing was changed" in said
    assert snapshot(root) == before

    rc, said = cli("import", alice, half, capsys=capsys)
    assert rc == 2 and "damaged or incomplete" in said, said
    assert snapshot(root) == before

    rc, said = cli("import", alice, other_plan, capsys=capsys)
    assert rc == 2
    assert ("plan digest of 2d differs: patch size (patch_size): the fold was trained with "
            "[96, 160], this experiment plans [32, 32]") in said
    assert "copy the plan" in said
    assert snapshot(root) == before

    rc, said = cli("import", alice, other_data, capsys=capsys)
    assert rc == 2
    assert ("dataset fingerprint differs: cases only in the fold's dataset: case_100, "
            "case_101; only here: case_008, case_009") in said
    assert ("validation cases of fold 3: the fold was trained holding out case_100, this "
            "experiment holds out case_008") in said
    assert snapshot(root) == before

    not_a_tar = tmp_path / "notes.txt"
    not_a_tar.write_text("hello")
    rc, said = cli("import", alice, not_a_tar, capsys=capsys)
    assert rc == 2 and "not a foldwatch fold archive" in said
    assert snapshot(root) == before


def test_an_existing_fold_is_replaced_only_when_asked_and_kept_aside(machines, tmp_path,
                                                                     capsys):
    bob, alice = machines
    out = pack(bob, "2d/2", tmp_path / "folds.tar")
    mine = completed_fold(alice, 2, host="alice-ws", ended="stopped")
    kept = snapshot(mine)
    rc, said = cli("import", alice, out, capsys=capsys)
    assert rc == 2
    assert "2d/2 exists here (partly trained: its log ends `stopped` after 2 of 2 epochs" in said
    assert "--replace moves it aside" in said and snapshot(mine) == kept
    rc, said = cli("import", alice, out, "--replace", capsys=capsys)
    assert rc == 0, said
    aside = [p for p in mine.parent.iterdir() if p.name.startswith("fold_2.old-")]
    assert len(aside) == 1 and snapshot(aside[0]) == kept
    assert f"kept as {aside[0]}" in said
    origin = json.loads((mine / "origin.json").read_text())
    assert origin["replaced"] == [str(aside[0])] and origin["trained_on"] == "bob-ws"


def test_a_running_fold_is_never_replaced(machines, tmp_path, capsys):
    bob, alice = machines
    out = pack(bob, "2d/2", tmp_path / "folds.tar")
    fold = alice.parent / "results" / "lab" / "2d" / "fold_2"
    fold.mkdir(parents=True)
    with RunLock(fold, role="train"):
        rc, said = cli("import", alice, out, "--replace", capsys=capsys)
    assert rc == 2 and f"2d/2 is running here (pid {os.getpid()}" in said
    assert "stop it first" in said and sorted(p.name for p in fold.iterdir()) == ["run.lock"]


def _import_crashing_at(point: str, alice: Path, archive: Path, *more: str):
    env = dict(os.environ, FOLDWATCH_CRASH_AT=point, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "console.clients.cli", "import", str(alice),
                           str(archive), *more], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)


def test_a_crash_mid_import_is_finished_or_undone_by_the_next_import(machines, tmp_path,
                                                                     capsys):
    bob, alice = machines
    out = pack(bob, "2d/2,2d/3", tmp_path / "folds.tar")
    imports = alice.parent / "results" / "lab" / "console" / "imports"
    folds = alice.parent / "results" / "lab" / "2d"
    # killed while staging, before anything was placed: the next import removes the stage
    r = _import_crashing_at("import:staged:1", alice, out)
    assert r.returncode == 86 and not folds.exists()
    assert len([p for p in imports.iterdir() if p.is_dir()]) == 1
    # killed between moving the old fold_2 aside and putting the new one in place
    completed_fold(alice, 2, host="alice-ws")
    r = _import_crashing_at("import:aside:1", alice, out, "--replace")
    assert r.returncode == 86
    assert ("removed the staging folder of an import interrupted before it changed anything"
            in r.stdout)
    assert not (folds / "fold_2").exists() and len(list(folds.glob("fold_2.old-*"))) == 1
    assert len(list(imports.glob("*.journal.json"))) == 1
    rc, said = cli("import", alice, out, capsys=capsys)
    assert rc == 0, said
    assert "finished the interrupted import of 2d/2, 2d/3" in said
    assert "imported from it already" in said
    assert sorted(p.name for p in imports.iterdir()) == ["lock"]
    for k in (2, 3):
        assert json.loads((folds / f"fold_{k}" / "origin.json").read_text())["trained_on"] == "bob-ws"
    assert json.loads((folds / "fold_2" / "origin.json").read_text())["replaced"]


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs for alice's results (root only; skipped, saying why, elsewhere)."""
    with tmpfs(tmp_path / "disk", 1024) as why_not:
        if why_not:
            pytest.skip(why_not)
        yield tmp_path / "disk"


def _leave_free(folder: Path, free: int) -> None:
    """A ballast file that leaves about `free` bytes on folder's disk."""
    ballast = folder / "ballast"
    ballast.unlink(missing_ok=True)
    with open(ballast, "wb") as f:
        f.write(b"\0" * max(0, os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize - free))
        f.flush()
        os.fsync(f.fileno())


def test_a_full_disk_during_import_changes_nothing(small_disk, tmp_path, capsys):
    bob = experiment(tmp_path / "bob")
    alice = experiment(tmp_path / "alice", results=small_disk)
    completed_fold(bob, 2, size=60_000)
    out = pack(bob, "2d/2", tmp_path / "folds.tar")
    (small_disk / "lab" / "console" / "imports").mkdir(parents=True)
    before = snapshot(small_disk / "lab")
    need = sum(f["size"] for f in json.loads(tarfile.open(out).extractfile(
        "foldwatch-manifest.json").read())["files"] if f["name"].startswith("runs/"))
    # too little for the files: said before anything is copied
    _leave_free(small_disk, need // 2)
    rc, said = cli("import", alice, out, capsys=capsys)
    assert rc == 74 and "not enough space to import" in said and "Nothing was changed" in said
    assert snapshot(small_disk / "lab") == before
    # room for the bytes, not for the file system's blocks: the disk fills up mid-stream
    _leave_free(small_disk, need + 8192)
    rc, said = cli("import", alice, out, capsys=capsys)
    assert rc == 74, said
    assert "no space left on" in said and "Nothing was changed" in said
    assert snapshot(small_disk / "lab") == before
    # with space again it goes through
    (small_disk / "ballast").unlink()
    rc, said = cli("import", alice, out, capsys=capsys)
    assert rc == 0, said
    assert (small_disk / "lab" / "2d" / "fold_2" / "checkpoints" / "final.pt").stat().st_size \
        == 60_000


def test_a_live_supervisor_holds_the_arriving_fold_and_takes_it_completed(tmp_path, monkeypatch,
                                                                          capsys):
    from engine_helpers import use_fake_trainer
    from supervisor_helpers import decisions, snapshot_runs, supervised, wait_for
    use_fake_trainer(monkeypatch, tmp_path, {"2d/0": {"rate": 0.5, "epochs": 400}})
    bob = experiment(tmp_path / "bob", folds=[0, 2])
    completed_fold(bob, 2)
    out = pack(bob, "2d/2", tmp_path / "folds.tar")
    alice = experiment(tmp_path / "alice", folds=[0, 2])
    with supervised(alice) as (client, home):
        # one CPU slot: 2d/0 trains, 2d/2 waits in the queue
        wait_for(lambda: snapshot_runs(home).get("2d/0", {}).get("state") == "running",
                 timeout=90, what="2d/0 running")
        assert snapshot_runs(home)["2d/2"]["state"] == "queued"
        rc, said = cli("import", alice, out, capsys=capsys)
        assert rc == 0, said
        assert "2d/2 taken out of the queue" in said
        assert "imported 2d/2: completed" in said
        wait_for(lambda: snapshot_runs(home)["2d/2"]["state"] == "completed", timeout=30,
                 what="2d/2 completed")
        assert snapshot_runs(home)["2d/0"]["state"] == "running"
        acts = [(d["run"], d["action"]) for d in decisions(alice)]
        assert ("2d/2", "import") in acts and ("2d/2", "launch") not in acts


def _command_experiment(folder: Path, argv: list[str]) -> Path:
    import yaml
    folder.mkdir(parents=True)
    path = folder / "cmd.yaml"
    path.write_text(yaml.safe_dump({
        "experiment": "cmd", "trainer": "command", "results": "results", "folds": [0, 1],
        "configurations": {"unet2d": {}},
        "command": {"argv": argv, "metrics": "jsonl",
                    "checkpoints": "{run_dir}/checkpoints/checkpoint_epoch*.pth"}}))
    return path


def test_a_command_fold_travels_with_its_newest_checkpoint(tmp_path, capsys):
    argv = ["python", "train.py", "--fold", "{fold}"]
    bob = _command_experiment(tmp_path / "bob", argv)
    fold = tmp_path / "bob" / "results" / "cmd" / "unet2d" / "fold_1"
    (fold / "checkpoints").mkdir(parents=True)
    for e in (1, 2):
        ckpt = fold / "checkpoints" / f"checkpoint_epoch{e}.pth"
        ckpt.write_bytes(os.urandom(1000))
        os.utime(ckpt, (1_700_000_000 + e, 1_700_000_000 + e))
    (fold / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in [
        {"t": 1.0, "event": "start", "configuration": "unet2d", "fold": 1, "pid": 1,
         "host": "bob-ws", "device": "cuda", "attempt": 1, "resumed_from": None, "epochs": 2,
         "iterations_per_epoch": None, "batch_size": None},
        {"t": 2.0, "event": "end", "status": "completed", "reason": "completed",
         "message": None, "error": None, "exit_code": 0}]))
    out = pack(bob, "unet2d/1", tmp_path / "cmd.tar")
    names = tarfile.open(out).getnames()
    assert "runs/unet2d/fold_1/checkpoints/checkpoint_epoch2.pth" in names
    assert "runs/unet2d/fold_1/checkpoints/checkpoint_epoch1.pth" not in names
    other = _command_experiment(tmp_path / "carol", ["python", "train_v2.py", "--fold", "{fold}"])
    rc, said = cli("import", other, out, capsys=capsys)
    assert rc == 2 and "the command: section differs: argv: the fold was trained with" in said
    alice = _command_experiment(tmp_path / "alice", argv)
    rc, said = cli("import", alice, out, capsys=capsys)
    assert rc == 0, said
    got = tmp_path / "alice" / "results" / "cmd" / "unet2d" / "fold_1"
    assert (got / "checkpoints" / "checkpoint_epoch2.pth").read_bytes() == \
        (fold / "checkpoints" / "checkpoint_epoch2.pth").read_bytes()
    assert json.loads((got / "origin.json").read_text())["trainer"] == "command"
