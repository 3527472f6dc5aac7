"""The cascade on a region-based dataset: 3d_lowres' region outputs (one sigmoid per region)
become the cascade's previous-stage label map by regions_class_order, in training and at
prediction time; the whole pipeline trains, evaluates per region, decides and predicts."""

import json

import nibabel as nib
import numpy as np

from cascade_fixture import IDENTITY
from contracts.experiment import load_experiment
from contracts.jsonio import read_json
from data_helpers import small_demo  # noqa: F401  (fixture)
from data_helpers import region_dataset, trainer_in_process, write_experiment
from train_fixture import train_in_process
from trainer.data.labelmaps import to_label_map
from trainer.inference import cascade

TINY = {"epochs": 1, "iterations_per_epoch": 2, "val_iterations": 1, "batch_size": 2,
        "base_features": 4, "max_features": 8, "num_workers": 0, "tta_mirroring": False,
        "patch_size": [16, 32, 32]}
STAGES = ("3d_lowres", "3d_cascade_fullres")
REGION_KEYS = {"(1, 2)", "(2,)"}


def test_region_outputs_become_labels_by_regions_class_order():
    """Two sigmoid channels (organ incl. lesion, lesion) are not a softmax over labels 0, 1, 2."""
    from trainer.data.geometry import from_canonical
    rng = np.random.default_rng(0)
    canon = rng.random((2, 4, 5, 6)).astype(np.float32)       # on the cascade grid (z, y, x)
    props = {"original": {"orientation_transform": IDENTITY}, "shape": [4, 5, 6],
             "crop_box": [[0, 4], [0, 5], [0, 6]]}
    original = from_canonical(canon, np.asarray(IDENTITY))
    got = cascade.to_cascade_grid(original, props, [0, 1, 2], [1, 2])
    assert np.array_equal(got, to_label_map(canon, [0, 1, 2], [1, 2]))
    assert set(np.unique(got)) == {0, 1, 2}
    plain = rng.random((3, 4, 5, 6)).astype(np.float32)      # labels: argmax, as before
    assert np.array_equal(cascade.to_cascade_grid(from_canonical(plain, np.asarray(IDENTITY)),
                                                  props, [0, 1, 2]), np.argmax(plain, 0))


def _lowres_label_on_cascade_grid(path, props):
    """A 3d_lowres validation label map brought onto the cascade grid the way the cascade's
    reference labels are (orientation, crop box, label resampling)."""
    from trainer.data.geometry import crop, to_canonical
    from trainer.data.resampling import resample_labels
    lab = np.asarray(nib.load(str(path)).dataobj)[None]
    lab = crop(to_canonical(lab, np.asarray(props["original"]["orientation_transform"])),
               props["crop_box"])[0]
    return resample_labels(lab, props["shape"], props["original"]["spacing_zyx"], props["spacing"])


def test_region_cascade_trains_evaluates_and_predicts(small_demo, tmp_path, monkeypatch,
                                                      capfd):
    monkeypatch.setenv("FOLDWATCH_CPU_THREADS", "1")
    data = region_dataset(small_demo, tmp_path / "Dataset901_Regions")
    cfg = {"3d_lowres": {**TINY, "spacing": [3.2, 1.7, 1.7]}, "3d_cascade_fullres": TINY}
    exp = write_experiment(tmp_path / "e.yaml", data, cfg)
    assert trainer_in_process("plan", "--experiment", exp, "--skip-check") == 0
    for c in STAGES:
        assert trainer_in_process("preprocess", "--experiment", exp, "--configuration", c) == 0
    for c in STAGES:
        for k in range(5):
            assert train_in_process(exp, c, k) == 0, (c, k)
    assert "previews of epoch" not in capfd.readouterr().err   # cascade previews get 3 channels
    lay = load_experiment(exp).layout
    assert list((lay.fold_dir("3d_cascade_fullres", 0) / "previews").glob("epoch_*.png"))

    # training: each case's previous stage is its lowres fold's region output as labels
    casc = lay.preprocessed("3d_cascade_fullres")
    splits = read_json(lay.splits)
    for k in range(5):
        for case in splits[k]["val"]:
            props = json.loads((casc / f"{case}.json").read_text())
            prev = np.load(casc / "previous_stage" / f"{case}_prev.npy")
            lowres = _lowres_label_on_cascade_grid(
                lay.validation("3d_lowres", k) / f"{case}.nii.gz", props)
            assert set(np.unique(prev)) == set(np.unique(lowres)) == {0, 1, 2}, case
            assert (prev == lowres).mean() > 0.85, case    # resampled probabilities vs labels
    import torch
    ckpt = torch.load(lay.checkpoints("3d_cascade_fullres", 0) / "final.pt", weights_only=True)
    assert ckpt["model"]["input_block.conv1.conv.weight"].shape[1] == 1 + 2   # CT + labels 1, 2
    heads = [v for k, v in ckpt["model"].items()
             if k.startswith("output_block") and k.endswith("weight")]
    assert heads and heads[0].shape[0] == 2                                 # two regions

    # evaluation per region, find-best over both stages and the pair, postprocessing per region
    for c in STAGES:
        assert trainer_in_process("crossval", "--experiment", exp, "--configuration", c) == 0
        assert set(read_json(lay.crossval(c) / "summary.json")["mean"]) == REGION_KEYS
    assert trainer_in_process("find-best", "--experiment", exp) == 0
    best = read_json(lay.best_configuration)
    assert set(best["candidates"]) == {"3d_lowres", "3d_cascade_fullres",
                                       "3d_cascade_fullres+3d_lowres"}
    post = read_json(lay.postprocessing)
    assert set(post["dice_per_class_before"]) == REGION_KEYS
    assert post["cases"] == 8
    from contracts.jsonio import iter_jsonl
    from contracts.layout import FIND_BEST, METRICS_FILE
    passes = {e["stage"] for e in iter_jsonl(lay.stage_dir(FIND_BEST) / METRICS_FILE)
              if e["event"] == "progress" and e["stage"].startswith("postprocessing")}
    assert passes == {"postprocessing", "postprocessing (pass 2)", "postprocessing (pass 3)"}

    # prediction: the lowres folds first, their region outputs painted by regions_class_order
    calls = []
    real = cascade.to_cascade_grid

    def spy(probs, props, values, order=None):
        calls.append((probs.shape[0], order))
        return real(probs, props, values, order)
    monkeypatch.setattr(cascade, "to_cascade_grid", spy)
    best["configurations"] = ["3d_cascade_fullres"]              # whatever won: the cascade
    lay.best_configuration.write_text(json.dumps(best))
    # ... and the region postprocessing applied to what is written. A one-epoch network's
    # label maps have no islands to remove, so the final map is planted: organ, lesion and a
    # false lesion island far away, larger than the real lesion. "organ incl. lesion" removes
    # it; had "lesion" gone first, it would have kept the island and dropped the lesion.
    post["largest_component_regions"] = [[1, 2], [2]]
    lay.postprocessing.write_text(json.dumps(post))
    import trainer.inference.prediction as prediction

    def planted(probs, values, order=None):
        assert probs.shape[0] == 2 and order == [1, 2]
        seg = np.zeros(probs.shape[1:], np.int16)
        seg[2:9, 2:9, 2:9], seg[4:6, 4:6, 4:6], seg[-3:, -3:, -2:] = 1, 2, 2
        return seg
    monkeypatch.setattr(prediction, "to_label_map", planted)
    assert trainer_in_process("predict", "--experiment", exp) == 0
    assert calls == [(2, [1, 2])] * 2                             # one per test case
    summary = read_json(lay.predictions / "summary.json")
    assert set(summary["mean"]) == REGION_KEYS and len(summary["metric_per_case"]) == 2
    preds = sorted(lay.predictions.glob("*.nii.gz"))
    assert len(preds) == 2
    for path in preds:
        written = np.asarray(nib.load(str(path)).dataobj)
        want = planted(np.zeros((2, *written.shape)), [0, 1, 2], [1, 2])
        want[-3:, -3:, -2:] = 0
        assert np.array_equal(written, want), path.name
    # the console's Results view names the regions as dataset.json does
    from console.kinds.results import LayoutResults
    rv = LayoutResults(lay, list(STAGES)).read()
    assert rv.postprocessing == "largest component of organ incl. lesion, lesion"
    assert set(rv.configurations[0].per_class) == {"organ incl. lesion", "lesion"}


def test_cascade_previews_feed_the_previous_stage_and_paint_regions(tmp_path):
    """The previews' network pass gets the previous stage one-hot (cut with the same window)
    and its region outputs are painted by regions_class_order, not argmaxed."""
    import torch

    from train_fixture import write_experiment as write_preprocessed
    from trainer.planning.plans import Plan
    from trainer.reporting.preview_sample import score_cases

    write_preprocessed(tmp_path)
    folder = tmp_path / "results/tiny/preprocessed/3d_fullres"
    plan = Plan.load(tmp_path / "results/tiny/plans/3d_fullres.json")
    plan.regions, plan.regions_class_order = {"organ incl. lesion": [1, 2], "lesion": [2]}, [1, 2]
    plan.previous_stage = "3d_lowres"
    prev_dir = tmp_path / "previous_stage"
    prev_dir.mkdir()
    seg = {c: np.load(folder / f"{c}_seg.npy") for c in ("case_000", "case_001")}
    np.save(prev_dir / "case_000_prev.npy", seg["case_000"])            # right
    np.save(prev_dir / "case_001_prev.npy", 2 * (seg["case_001"] > 0))  # all lesion

    class EchoPreviousStage(torch.nn.Module):
        """Region logits read off the one-hot channels: organ incl. lesion, lesion."""
        def forward(self, x):
            assert x.shape[1] == 1 + 2
            organ, lesion = x[:, 1], x[:, 2]
            return torch.stack([organ + lesion, lesion], 1) * 20 - 10

    shown = score_cases(EchoPreviousStage(), plan, folder, ["case_000", "case_001"],
                        torch.device("cpu"), previous=prev_dir)
    assert len(shown) == 2
    right, lesion = shown
    assert 1 in right.truth and np.array_equal(right.pred, right.truth) and right.dice == 1.0
    assert np.array_equal(lesion.pred, 2 * (lesion.truth > 0)) and 2 in lesion.pred
