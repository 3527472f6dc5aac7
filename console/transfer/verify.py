"""Does an import source fit this experiment? Everything is checked before anything is copied:
the trainer kind, the runs, and the plan, splits and fingerprint digests (contracts.digests);
a mismatch is refused with what differs in people's terms and what to do."""

from __future__ import annotations

from dataclasses import dataclass, field

from contracts import digests as d
from contracts.errors import ConfigError
from contracts.experiment import Experiment

from console.transfer import context as ctx
from console.transfer import differences as diff


class Refused(ConfigError):
    """The source does not fit this experiment; nothing was changed."""

    def __init__(self, where: str, problems: list[str]) -> None:
        self.problems = problems
        body = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"cannot import {where}:\n{body}\nNothing was changed.")


@dataclass
class Checked:
    keys: list[str]                          # the runs to import
    notes: list[str] = field(default_factory=list)
    install_splits: bool = False             # nnunetv2: put the source's splits_final.json here


def _subject(trainer: str, parsed: dict, what: str, cfg: str | None = None):
    if trainer == "foldwatch":
        return {"plan": lambda: parsed[ctx.PLANS.format(cfg)], "splits": lambda: parsed[ctx.SPLITS],
                "fingerprint": lambda: d.foldwatch_fingerprint_subject(parsed[ctx.FINGERPRINT])}[what]()
    if trainer == "command":
        return d.command_plan_subject(parsed[ctx.COMMAND])
    return {"plan": lambda: d.nnunet_plan_subject(parsed[ctx.NN_PLANS], cfg, parsed[ctx.NN_DATASET]),
            "splits": lambda: parsed[ctx.NN_SPLITS],
            "fingerprint": lambda: parsed[ctx.NN_FINGERPRINT]}[what]()


def _select(exp: Experiment, source, runs: list[str] | None, problems: list[str]) -> list[str]:
    have = source.manifest.keys
    if runs:
        missing = [r for r in runs if r not in have]
        if missing:
            problems.append(f"--runs: {', '.join(missing)} not in the archive (it holds "
                            f"{', '.join(have)})")
        keys = [k for k in have if k in runs]
    else:
        keys = list(have)
    if not keys and not problems:
        problems.append("no fold to import in it")
    for key in keys:
        cfg, _, k = key.rpartition("/")
        if cfg not in exp.configurations:
            problems.append(f"{key}: configuration {cfg} is not in {exp.source} (it has "
                            f"{', '.join(exp.configurations)}); add it, or leave this fold out "
                            "with --runs")
        elif int(k) not in exp.folds:
            problems.append(f"{key}: fold {k} is not in the experiment's folds {exp.folds}; "
                            "add it to `folds:`, or leave it out with --runs")
    return keys


def _nnunet_names(exp: Experiment, source, problems: list[str]) -> None:
    info = source.manifest.nnunet or {}
    places = ctx.nnunet_places(exp)
    combos = info.get("models") or [(info.get("trainer"), info.get("plans"))]
    for trainer, plans in combos:
        if trainer != places.trainer:
            problems.append(f"the folds were trained by nnU-Net trainer {trainer}; this experiment's "
                            f"nnunet.trainer is {places.trainer}. Import them into an experiment "
                            "with the same trainer class")
        if plans != places.plans:
            problems.append(f"the folds were trained with nnU-Net plans {plans}; this experiment's "
                            f"nnunet.plans is {places.plans}")


def _compare(exp: Experiment, source, keys: list[str], out: Checked,
             problems: list[str]) -> None:
    cfgs = list(dict.fromkeys(k.rpartition("/")[0] for k in keys))
    where = source.where
    theirs_ctx = ctx.parse(source.context, where)
    theirs = ctx.digests(exp.trainer, theirs_ctx, cfgs, where)
    said = source.manifest.digests
    altered = (any(theirs["plan"][c] != (said.get("plan") or {}).get(c) for c in cfgs)
               or theirs["splits"] != said.get("splits")
               or theirs["fingerprint"] != said.get("fingerprint"))
    if source.kind == "foldwatch-archive" and altered:
        raise Refused(where, ["its manifest's digests do not match its own plan/splits/"
                              "fingerprint files: the archive was altered"])
    ours_ctx = ctx.parse(ctx.local_context(exp, cfgs), str(exp.source))
    ours = ctx.digests(exp.trainer, ours_ctx, cfgs, str(exp.source))
    for cfg in cfgs:
        if theirs["plan"][cfg] != ours["plan"][cfg]:
            lines = diff.dict_lines(_subject(exp.trainer, theirs_ctx, "plan", cfg),
                                    _subject(exp.trainer, ours_ctx, "plan", cfg),
                                    "runs" if exp.trainer == "command" else "plans")
            what = "the command: section" if exp.trainer == "command" else f"plan digest of {cfg}"
            problems.append(f"{what} differs: " + "; ".join(lines) + ". "
                            + diff.FIXES["command" if exp.trainer == "command" else "plan"])
    if theirs["fingerprint"] != ours["fingerprint"]:
        lines = diff.fingerprint_lines(_subject(exp.trainer, theirs_ctx, "fingerprint"),
                                       _subject(exp.trainer, ours_ctx, "fingerprint"))
        problems.append("dataset fingerprint differs: " + "; ".join(lines)
                        + f". {diff.FIXES['fingerprint']}")
    folds = [int(k.rpartition("/")[2]) for k in keys]
    if theirs["splits"] and ours["splits"] and theirs["splits"] != ours["splits"]:
        lines = diff.splits_lines(_subject(exp.trainer, theirs_ctx, "splits"),
                                  _subject(exp.trainer, ours_ctx, "splits"), folds)
        problems.append("splits digest differs: " + "; ".join(lines)
                        + f". {diff.FIXES['splits']}")
    elif theirs["splits"] and not ours["splits"]:
        out.install_splits = True
        out.notes.append("this experiment has no splits_final.json yet: the folds' is put in "
                         "place, so folds trained here later use the same splits")
    elif not theirs["splits"]:
        validated = getattr(source, "validated", {})
        for key in keys:
            if not ours["splits"]:
                out.notes.append(f"{key}: its validation cases could not be checked (no "
                                 "splits_final.json here yet)")
                continue
            lines = diff.nnunet_validation_lines(int(key.rpartition("/")[2]),
                                                 validated.get(key, set()),
                                                 ours_ctx[ctx.NN_SPLITS])
            if lines:
                problems.append(f"{key}: " + "; ".join(lines) + f". {diff.FIXES['splits']}")


def _nnunet_complete(exp: Experiment, source, keys: list[str], problems: list[str]) -> None:
    """A plain nnU-Net fold must hold what find-best and prediction read."""
    ending = ".nii.gz"
    try:
        import json
        ending = json.loads(source.context[ctx.NN_DATASET]).get("file_ending", ending)
    except (ValueError, KeyError):
        pass
    zip_fix = ("nnUNetv2_export_model_to_zip leaves the validation probabilities (.npz) out, and "
               "the segmentations unless --exp_cv_preds: import the fold folder itself "
               "(nnUNet_results/<dataset>/<trainer>__<plans>__<cfg>/fold_<k>)")
    for key in keys:
        members = source.members(key)
        lacking = [n for n in ("checkpoint_final.pth", "validation/summary.json")
                   if n not in members]
        cases = sorted(source.validated.get(key, ()))
        if exp.pipeline.find_best:
            lacking += [f"validation/{c}{ending}" for c in cases
                        if f"validation/{c}{ending}" not in members]
            if exp.nnunet.npz:
                lacking += [f"validation/{c}.npz" for c in cases
                            if f"validation/{c}.npz" not in members]
        if lacking:
            shown = ", ".join(lacking[:4]) + (f" (+{len(lacking) - 4} more)"
                                              if len(lacking) > 4 else "")
            why = ("training did not finish (no checkpoint_final.pth)" if
                   "checkpoint_final.pth" in lacking else "find-best reads them")
            fix = zip_fix if source.kind == "nnunet-zip" else "train the fold to its end there"
            problems.append(f"{key} lacks {shown}: {why}. {fix}")


def _hyperparameter_notes(exp: Experiment, source, keys: list[str], out: Checked) -> None:
    for run in source.manifest.runs:
        if run.key not in keys or not run.hyperparameters:
            continue
        cfg = exp.configurations.get(run.configuration)
        mine = cfg.model_dump(mode="json") if cfg is not None else {}
        changed = [f"{k} {run.hyperparameters.get(k)!r} (here {mine.get(k)!r})"
                   for k in sorted(set(mine) & set(run.hyperparameters))
                   if run.hyperparameters.get(k) != mine.get(k)]
        if changed:
            out.notes.append(f"{run.key} was trained with " + ", ".join(changed[:6])
                             + (" …" if len(changed) > 6 else ""))


def check(exp: Experiment, source, runs: list[str] | None) -> Checked:
    m, where = source.manifest, source.where
    if m.trainer != exp.trainer:
        raise Refused(where, [f"it holds folds trained with trainer: {m.trainer}; "
                              f"{exp.source} trains with trainer: {exp.trainer}. Import it "
                              "into an experiment of the same kind"])
    problems: list[str] = []
    keys = _select(exp, source, runs, problems)
    out = Checked(keys)
    if m.experiment and m.experiment != exp.experiment:
        out.notes.append(f"packed from experiment {m.experiment!r} (this one is "
                         f"{exp.experiment!r}); its plan, splits and dataset match")
    if problems:
        raise Refused(where, problems)
    if exp.trainer == "nnunetv2":
        _nnunet_names(exp, source, problems)
    try:
        _compare(exp, source, keys, out, problems)
    except Refused:
        raise
    except ConfigError as e:             # no plan here yet, an unreadable file
        problems.append(str(e))
    if source.kind != "foldwatch-archive":
        _nnunet_complete(exp, source, keys, problems)
    if problems:
        raise Refused(where, problems)
    _hyperparameter_notes(exp, source, keys, out)
    return out
