"""find-best: single configurations and pairwise ensembles, the winner, its postprocessing."""

from __future__ import annotations

import itertools

from contracts.errors import ConfigError
from contracts.experiment import Experiment
from contracts.jsonio import atomic_write_bytes, atomic_write_json, read_json

from trainer.evaluation.crossval import case_folds, gather
from trainer.inference.ensembling import iter_validation_pairs
from trainer.evaluation.metrics import case_metrics, summarize
from trainer.planning.plans import Plan
from trainer.evaluation.postprocessing import Postprocessing, decide


def _labels(exp: Experiment) -> tuple[list[int], list[int], Plan]:
    plans = [Plan.load(exp.layout.plan(c)) for c in exp.configurations]
    label_sets = {(tuple(sorted(p.labels.values())), str(p.regions), str(p.regions_class_order))
                  for p in plans}
    if len(label_sets) != 1:
        raise ConfigError(f"the configurations' plans declare different label sets {label_sets}; "
                          "re-run `python -m trainer plan`")
    values = sorted(plans[0].labels.values())
    return values, [v for v in values if v != 0], plans[0]


def score_ensemble(exp: Experiment, members: tuple[str, ...], folds_of, values, fg, log=None,
                   plan: Plan | None = None) -> dict:
    per_case = []
    keys = plan.eval_keys if plan else fg
    order = plan.regions_class_order if plan else None
    for i, (case, pred, ref) in enumerate(iter_validation_pairs(exp, members, folds_of, values,
                                                                order)):
        m = case_metrics(pred, ref, keys)
        m.update(case=case, fold=folds_of[case])
        per_case.append(m)
        if log:
            log.progress("ensemble " + "+".join(members), i + 1, len(folds_of))
    summary = summarize(per_case, keys)
    summary["members"] = list(members)
    atomic_write_json(exp.layout.ensemble(members) / "summary.json", summary)
    return summary


def _passes(exp: Experiment, members: tuple[str, ...], folds_of, values, plan: Plan, log):
    """A fresh iterator of (prediction, reference) per call: regions are decided in several
    passes over the cases (1 + one per region); each pass shows as progress."""
    count = [0]

    def one_pass():
        count[0] += 1
        name = "postprocessing" + (f" (pass {count[0]})" if count[0] > 1 else "")
        for i, (_, p, r) in enumerate(iter_validation_pairs(exp, members, folds_of, values,
                                                            plan.regions_class_order)):
            if log:
                log.progress(name, i + 1, len(folds_of))
            yield p, r
    return one_pass


def _key(name: tuple[str, ...], dice) -> tuple:
    # Higher Dice first; on a tie a single configuration beats an ensemble, then by name.
    d = dice if dice is not None else float("-inf")
    return (-d, len(name), name)


def find_best(exp: Experiment, log=None) -> dict:
    layout = exp.layout
    values, fg, plan = _labels(exp)
    folds_of = case_folds(exp)
    scores: dict[tuple[str, ...], float | None] = {}
    for cfg in exp.configurations:
        path = layout.crossval(cfg) / "summary.json"
        # pipeline.evaluate off: the summary is made here (same function as the crossval stage)
        cv = read_json(path) if path.exists() else gather(exp, cfg)
        scores[(cfg,)] = cv["foreground_mean"]["Dice"]
    for pair in itertools.combinations(sorted(exp.configurations), 2):
        scores[pair] = score_ensemble(exp, pair, folds_of, values, fg, log,
                                      plan)["foreground_mean"]["Dice"]
    best = min(scores, key=lambda n: _key(n, scores[n]))
    if exp.pipeline.postprocess:
        post, report = decide(_passes(exp, best, folds_of, values, plan, log), plan.eval_keys)
    else:
        post, report = Postprocessing(), {"disabled": "pipeline.postprocess is false"}
    result = {
        "configurations": list(best),
        "ensemble": len(best) > 1,
        "foreground_mean_dice": scores[best],
        "folds": list(exp.folds),
        "candidates": {"+".join(n): d for n, d in sorted(scores.items(), key=lambda kv: _key(*kv))},
    }
    atomic_write_json(layout.best_configuration, result)
    atomic_write_json(layout.postprocessing, {**post.to_dict(), "decided_on": list(best), **report})
    atomic_write_bytes(layout.root / "how_to_predict.txt",
                       _how_to(exp, result, post, plan).encode())
    return {"best": result, "postprocessing": post.to_dict(), "report": report}


def _how_to(exp: Experiment, best: dict, post, plan: Plan) -> str:
    what = " + ".join(best["configurations"])
    steps = []
    if post.largest_component_all_foreground:
        steps.append("keep the largest connected component of all foreground")
    if post.largest_component_classes:
        steps.append("keep the largest component of class(es) "
                     + ", ".join(map(str, post.largest_component_classes)))
    if post.largest_component_regions:
        names = {tuple(v): k for k, v in plan.regions.items()}
        steps.append("keep the largest component of region(s), in this order, " + ", ".join(
            f"{names.get(r, 'region')} {list(r)}" for r in post.largest_component_regions))
    return (f"Best: {what} ({'ensemble' if best['ensemble'] else 'single configuration'}), "
            f"cross-validation foreground mean Dice {best['foreground_mean_dice']:.4f}, "
            f"folds {best['folds']} averaged.\n"
            f"Postprocessing: {'; '.join(steps) if steps else 'none'}.\n\n"
            f"Predict a folder of images named the nnU-Net way (CASE_0000.nii.gz ...):\n"
            f"  python -m trainer predict --experiment {exp.source} -i INPUT_DIR -o OUTPUT_DIR\n"
            f"Without -i/-o it predicts the dataset's imagesTs into {exp.layout.predictions}.\n")
