"""It learns: the demo's own settings reach a 5-fold mean foreground Dice of at least 0.85."""

import numpy as np
import pytest
import yaml

from contracts.experiment import load_experiment
from contracts.jsonio import read_json
from demo_fixture import demo_experiment
from train_fixture import ROOT, run_train


@pytest.mark.slow
@pytest.mark.parametrize("configuration", ["3d_fullres"])
def test_demo_five_fold_mean_foreground_dice(tmp_path, configuration):
    demo_cfg = yaml.safe_load((ROOT / "configs/demo.yaml").read_text())["configurations"]
    path = demo_experiment(tmp_path, {configuration: demo_cfg[configuration]})
    layout = load_experiment(path).layout
    dice = []
    for fold in range(5):
        r = run_train(path, fold=fold, configuration=configuration, timeout=900)
        assert r.returncode == 0, r.stderr
        summary = read_json(layout.validation(configuration, fold) / "summary.json")
        dice.append(summary["foreground_mean"]["Dice"])
    print(f"{configuration}: per-fold foreground Dice {dice}, mean {np.mean(dice):.4f}")
    assert np.mean(dice) >= 0.85
