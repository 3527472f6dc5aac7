"""Predict a folder of images with the chosen configuration(s), all folds averaged."""

from __future__ import annotations

import sys
from pathlib import Path


from contracts.errors import ConfigError, DatasetError
from contracts.experiment import Experiment
from contracts.jsonio import atomic_write_json, read_json

from trainer.data.labelmaps import atomic_nifti, atomic_npz, to_label_map
from trainer.planning.plans import Plan
from trainer.evaluation.postprocessing import Postprocessing


def chosen(exp: Experiment) -> tuple[list[str], Postprocessing]:
    """The configurations and postprocessing find-best chose (or the only configuration)."""
    layout = exp.layout
    if layout.best_configuration.exists():
        best = read_json(layout.best_configuration)["configurations"]
        post = (Postprocessing.from_dict(read_json(layout.postprocessing))
                if layout.postprocessing.exists() else Postprocessing())
        return best, post
    if len(exp.configurations) == 1 or not exp.pipeline.find_best:
        # nothing to choose from (or choosing switched off): all configurations, averaged
        return list(exp.configurations), Postprocessing()
    raise ConfigError(f"{layout.best_configuration}: not found; run `python -m trainer find-best "
                      f"--experiment {exp.source}` first (or keep one configuration)")


def load_networks(exp: Experiment, configuration: str, device) -> list:
    from trainer.inference.sliding_window import load_fold_network
    plan = Plan.load(exp.layout.plan(configuration))
    missing = [k for k in exp.folds
               if not (exp.layout.checkpoints(configuration, k) / "final.pt").exists()]
    if missing:
        raise ConfigError(f"{configuration}: fold(s) {', '.join(map(str, missing))} have no "
                          "checkpoints/final.pt; finish training them before predicting")
    return [load_fold_network(exp.layout.checkpoints(configuration, k) / "final.pt", plan, device)
            for k in exp.folds]


def _device(name: str):
    import torch
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is visible (CUDA_VISIBLE_DEVICES?)")
    return torch.device(name)


def predict_folder(exp: Experiment, input_dir: Path | None, output_dir: Path | None, *,
                   save_probabilities: bool = False, overwrite: bool = False,
                   device: str = "auto", log=None) -> dict:
    """Write <case>.nii.gz per input case; cases already predicted are kept unless overwrite."""
    from trainer.data import slices
    from trainer.data.datasets import cases_in_folder, load_dataset
    from trainer.data.geometry import preprocess_image, to_original
    from trainer.inference.sliding_window import predict_probabilities

    configurations, post = chosen(exp)
    # a cascade member needs its previous stage's prediction first, chosen or not
    stages = _with_previous_stages(exp, configurations)
    plans = {c: Plan.load(exp.layout.plan(c)) for c in stages}
    first = plans[configurations[0]]
    info = load_dataset(exp.dataset_path)
    if input_dir is None:
        cases = info.test_cases
        where = exp.resolve(exp.test_images) if exp.test_images else info.root / "imagesTs"
        if exp.test_images:
            cases = cases_in_folder(where, len(first.channel_names), first.file_ending)
    else:
        where = input_dir
        cases = cases_in_folder(input_dir, len(first.channel_names), first.file_ending)
    if not cases:
        if input_dir is None and not exp.test_images:
            print(f"{where}: the dataset has no test images; nothing to predict")
            return {"predicted": 0, "kept": 0, "output": None, "configurations": configurations,
                    "postprocessing": post.to_dict()}
        raise DatasetError(f"{where}: no images named <case>_0000{first.file_ending} to predict")
    out = output_dir or exp.layout.predictions
    out.mkdir(parents=True, exist_ok=True)
    dev = _device(device)
    nets = {c: load_networks(exp, c, dev) for c in stages}
    cfgs = {c: exp.configurations[c] for c in stages}
    values = sorted(first.labels.values())
    todo = [c for c in cases if overwrite or not (out / f"{c.case_id}{first.file_ending}").exists()]
    kept = len(cases) - len(todo)
    if kept:
        print(f"{kept} case(s) already predicted in {out} are kept (--overwrite redoes them)",
              file=sys.stderr)
    slice_values = None
    if cases and slices.is_slice_file(cases[0].images[0]) and slices.is_slice_folder(info.root):
        slice_values = slices.mask_values(str(info.root / "masks"))
    bar = _progress_bar(len(todo))
    previews = []
    for i, case in enumerate(todo):
        props, per_stage = None, {}
        for c in stages:
            data, p = preprocess_image(case.images, plans[c])
            if plans[c].previous_stage:
                from trainer.inference.cascade import to_cascade_grid, with_previous
                prev = to_cascade_grid(per_stage[plans[c].previous_stage], p, values,
                                       plans[c].regions_class_order)
                data = with_previous(data, prev, plans[c])
            per_stage[c] = to_original(predict_probabilities(nets[c], data, plans[c],
                                                             mirror=cfgs[c].tta_mirroring,
                                                             overlap=cfgs[c].sliding_window_overlap,
                                                             device=dev), p,
                                       regions=plans[c].has_regions)
            props = props or p
        probs = sum(per_stage[c] for c in configurations) / len(configurations)
        seg = post.apply(to_label_map(probs, values, first.regions_class_order))
        target = out / f"{case.case_id}{first.file_ending}"
        atomic_nifti(seg, props, target)
        if slice_values is not None:           # image + mask folders: a mask image too
            from trainer.data.slices import write_mask
            write_mask(seg, slice_values, out / f"{case.case_id}.png")
        previews.append(_preview(case, seg))
        if save_probabilities:
            atomic_npz(out / f"{case.case_id}.npz", probs)
        if log:
            log.progress("predict", i + 1, len(todo), case=case.case_id)
        if bar:
            bar.advance(case.case_id)
    if bar:
        bar.close()
    if previews:
        from trainer.reporting.previews import write_previews
        write_previews(previews, out / "previews", None, "test")
    result = {"predicted": len(todo), "kept": kept, "output": str(out),
              "configurations": configurations, "postprocessing": post.to_dict()}
    labelled = {c.case_id: c.label for c in cases if c.label is not None}
    if labelled and len(labelled) == len(cases):
        from trainer.evaluation.compare import evaluate_folders
        ref_dir = Path(next(iter(labelled.values()))).parent
        summary = evaluate_folders(out, ref_dir, first.eval_keys, first.file_ending)
        atomic_write_json(out / "summary.json", summary)
        result["foreground_mean_dice"] = summary["foreground_mean"]["Dice"]
    return result


def _with_previous_stages(exp: Experiment, configurations: list[str]) -> list[str]:
    """The configurations to run, each previous stage before the stage that reads it."""
    out: list[str] = []
    for c in configurations:
        plan = Plan.load(exp.layout.plan(c))
        if plan.previous_stage and plan.previous_stage not in out:
            out.append(plan.previous_stage)
        if c not in out:
            out.append(c)
    return out


def _preview(case, seg):
    """The case's preview slice: original image, prediction, reference when the case has one."""
    import numpy as np
    from trainer.data.geometry import load_images, load_label
    from trainer.reporting.previews import volume_preview
    image = load_images([case.images[0]])[0][0]       # first channel (NIfTI or PNG/JPEG slice)
    truth = (np.rint(load_label(case.label)[0]).astype(np.int16)
             if case.label is not None else None)
    return volume_preview(case.case_id, image, seg, truth)


class _progress_bar:
    """A rich progress bar on a terminal; nothing when the output is a log file."""

    def __new__(cls, total: int):
        if not sys.stdout.isatty() or total == 0:
            return None
        return super().__new__(cls)

    def __init__(self, total: int) -> None:
        from rich.progress import Progress
        self.progress = Progress(transient=False)
        self.progress.start()
        self.task = self.progress.add_task("predicting", total=total)

    def advance(self, case: str) -> None:
        self.progress.update(self.task, advance=1, description=f"predicted {case}")

    def close(self) -> None:
        self.progress.stop()
