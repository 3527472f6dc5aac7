"""A fold's folders on this machine, which of their files travel in an archive, and whether the
fold has completed (the three trainer kinds, docs/transfer.md "What an archive holds").

Packed: everything the pipeline and the views read from a fold: the final and best checkpoints
(every checkpoint with --all-checkpoints), the validation predictions, probabilities and
summary, the metric log and stdout/stderr, progress.png and the previews. Left out: the run
lock, Slurm's submission record, an earlier import's origin.json, TensorBoard and W&B files
(exports, rebuilt from the log or synced from the machine that trained), temp files.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from contracts.experiment import Experiment, run_name
from contracts.jsonio import iter_jsonl, read_json
from contracts.layout import CHECKPOINTS_DIR, METRICS_FILE, ORIGIN_FILE, run_files
from contracts.runlock import holder

from console.transfer.context import NnunetPlaces, nnunet_places

_TEMP = re.compile(r"^\..*\.tmp$")
SKIP_RUN = {"run.lock", "slurm-job.json", "slurm-job.sh", ORIGIN_FILE, "tensorboard", "wandb"}
FOLDWATCH_CKPTS = ("final.pt", "best.pt")
NNUNET_CKPTS = ("checkpoint_final.pth", "checkpoint_best.pth")
SKIP_NNUNET = {"wandb"}           # nnU-Net's own W&B runs: `wandb sync` where they were trained


@dataclass
class LogSummary:
    """What a fold's metrics.jsonl says about its training."""
    end: dict | None = None
    host: str | None = None          # of its last start
    epochs_done: int | None = None
    epochs: int | None = None
    validation_dice: float | None = None
    hyperparameters: dict | None = None


def read_log(run_dir: Path) -> LogSummary:
    s = LogSummary()
    try:
        events = list(iter_jsonl(run_dir / METRICS_FILE))
    except OSError:
        return s
    for ev in events:
        name = ev.get("event")
        if name == "start":
            s.end, s.host = None, ev.get("host") or s.host
            s.epochs = ev.get("epochs") if isinstance(ev.get("epochs"), int) else s.epochs
            if isinstance(ev.get("hyperparameters"), dict):
                s.hyperparameters = ev["hyperparameters"]
        elif name == "epoch" and isinstance(ev.get("epoch"), int):
            s.epochs_done = max(s.epochs_done or 0, ev["epoch"] + 1)
        elif name == "validation":
            v = ev.get("foreground_dice")
            s.validation_dice = v if isinstance(v, (int, float)) else None
        elif name == "end":
            s.end = ev
    return s


def completed(log: LogSummary) -> bool:
    """The engine's rule: the latest attempt ended `completed` with exit code 0."""
    return (log.end is not None and log.end.get("status") == "completed"
            and log.end.get("exit_code", 0) == 0)


@dataclass
class Fold:
    key: str
    configuration: str
    fold: int
    run_dir: Path                         # foldwatch's run folder
    nnunet_dir: Path | None = None        # trainer: nnunetv2: nnU-Net's fold folder
    val_cases: list[str] = field(default_factory=list)   # from this machine's splits


def folds_of(exp: Experiment, keys: list[str]) -> tuple[list[Fold], NnunetPlaces | None]:
    """The experiment's folds named by `keys` (checked by the caller) on this machine."""
    places = nnunet_places(exp) if exp.trainer == "nnunetv2" else None
    splits = _splits(exp, places)
    out = []
    for key in keys:
        cfg, _, k = key.rpartition("/")
        fold = int(k)
        out.append(Fold(key, cfg, fold, exp.layout.fold_dir(cfg, fold),
                        places.fold_dir(cfg, fold) if places else None,
                        list(splits[fold]["val"]) if splits and fold < len(splits) else []))
    return out, places


def _splits(exp: Experiment, places: NnunetPlaces | None) -> list | None:
    path = (places.preprocessed / "splits_final.json" if places else
            exp.layout.splits if exp.trainer == "foldwatch" else None)
    try:
        data = read_json(path) if path is not None else None
    except (OSError, ValueError):
        return None
    return data if isinstance(data, list) else None


def fold_keys(exp: Experiment) -> list[str]:
    return [run_name(c, k) for c in exp.configurations for k in exp.folds]


def _walk(root: Path, skip) -> list[tuple[str, Path]]:
    """(path relative to `root` with '/', path) of every regular file not skipped, sorted."""
    out = []
    for dirpath, dirs, files in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        dirs[:] = sorted(x for x in dirs
                         if not skip(f"{x}/" if rel_dir == "." else f"{rel_dir}/{x}/"))
        for name in sorted(files):
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            p = Path(dirpath) / name
            if _TEMP.match(name) or not p.is_file() or p.is_symlink() or skip(rel):
                continue
            out.append((rel, p))
    return out


def run_dir_files(exp: Experiment, fold: Fold, all_checkpoints: bool) -> list[tuple[str, Path]]:
    """The foldwatch run folder's files that travel."""
    command_ckpts = _command_checkpoints(exp, fold) if exp.trainer == "command" else None

    def skip(rel: str) -> bool:
        top = rel.split("/")[0].rstrip("/")
        if top in SKIP_RUN:
            return True
        if exp.trainer == "foldwatch" and rel.startswith(f"{CHECKPOINTS_DIR}/") \
                and rel.count("/") == 1 and not rel.endswith("/"):
            return not all_checkpoints and rel.split("/")[1] not in FOLDWATCH_CKPTS
        if command_ckpts and not all_checkpoints and rel in command_ckpts[1:]:
            return True            # only the newest match, the one a resume would read
        return False
    return _walk(fold.run_dir, skip)


def _command_checkpoints(exp: Experiment, fold: Fold) -> list[str]:
    """`command.checkpoints` matches inside the run folder, newest first (relative paths)."""
    import glob
    from console.kinds.command import CommandKind
    from console.kinds.jobs import Job
    kind = CommandKind(exp)
    if not exp.command.checkpoints:
        return []
    job = Job(fold.key, "fold", "train", fold.run_dir, configuration=fold.configuration,
              fold=fold.fold)
    pattern = exp.command.checkpoints.format(**kind.values(job, "cpu"))
    if not os.path.isabs(pattern):
        pattern = str(kind.cwd / pattern)
    matches = [p for p in glob.glob(pattern) if not os.path.basename(p).startswith(".")]
    out = []
    for p in sorted(matches, key=lambda p: os.stat(p).st_mtime, reverse=True):
        try:
            out.append(Path(p).resolve().relative_to(fold.run_dir.resolve()).as_posix())
        except ValueError:
            continue            # outside the run folder: not packed (docs/transfer.md)
    return out


def nnunet_dir_files(fold: Fold, all_checkpoints: bool) -> list[tuple[str, Path]]:
    def skip(rel: str) -> bool:
        if rel.split("/")[0] in SKIP_NNUNET:
            return True
        if "/" not in rel and rel.startswith("checkpoint_") and rel.endswith(".pth"):
            return not all_checkpoints and rel not in NNUNET_CKPTS
        return False
    return _walk(fold.nnunet_dir, skip) if fold.nnunet_dir is not None else []


def running(fold: Fold) -> str | None:
    """'pid 812 on bob-ws' when a process holds the fold's run folder."""
    h = holder(fold.run_dir)
    if h is None:
        return None
    return f"pid {h.get('pid', '?')} on {h.get('host', '?')}"


def describe_end(log: LogSummary) -> str:
    done = (f" after {log.epochs_done} of {log.epochs} epochs" if log.epochs_done is not None
            and log.epochs else "")
    if log.end is None:
        return "its log has no `end` (killed, or still training elsewhere)" + done
    why = log.end.get("message") or log.end.get("reason") or ""
    if why == log.end.get("status"):
        why = ""
    return f"its log ends `{log.end.get('status')}`{done}" + (f" ({why})" if why else "")


def incomplete(exp: Experiment, fold: Fold) -> list[str]:
    """What keeps a fold from being packed: empty when it completed and has what the
    pipeline reads."""
    who = running(fold)
    if who:
        return [f"it is running ({who})"]
    problems = []
    if not fold.run_dir.is_dir():
        if fold.nnunet_dir is not None and (fold.nnunet_dir / "checkpoint_final.pth").exists():
            return [f"no run folder ({fold.run_dir}): nnU-Net trained it without foldwatch; "
                    f"import its nnU-Net fold folder ({fold.nnunet_dir}) on the other machine "
                    "instead"]
        return [f"no run folder ({fold.run_dir})"]
    log = read_log(fold.run_dir)
    if not completed(log):
        problems.append(describe_end(log))
    if exp.trainer == "foldwatch":
        val = fold.run_dir / "validation"
        if not (run_files(fold.run_dir)["checkpoints"] / "final.pt").exists():
            problems.append("no checkpoints/final.pt")
        lacking = [p.name for p in [val / "summary.json"] + [
            val / f"{c}{ext}" for c in fold.val_cases for ext in (".nii.gz", ".npz")]
            if not p.exists()]
        if lacking:
            problems.append("its validation lacks " + ", ".join(lacking[:5])
                            + (f" (+{len(lacking) - 5} more)" if len(lacking) > 5 else ""))
    elif exp.trainer == "nnunetv2":
        nd = fold.nnunet_dir
        need = [nd / "checkpoint_final.pth", nd / "validation" / "summary.json"]
        if exp.nnunet.npz:
            need += [nd / "validation" / f"{c}.npz" for c in fold.val_cases]
        problems += [f"no {p}" for p in need if not p.exists()]
    return problems
