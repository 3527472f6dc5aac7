"""Metric definitions against hand-counted cases, including the empty ones nnU-Net treats specially."""

import json
import math

import numpy as np

from contracts.jsonio import dumps
from trainer.evaluation.metrics import case_metrics, summarize


def test_counts_and_dice_by_hand():
    ref = np.array([[1, 1, 0, 2], [0, 0, 0, 2]])
    pred = np.array([[1, 0, 1, 2], [0, 0, 0, 0]])
    m = case_metrics(pred, ref, [1, 2])["metrics"]
    assert (m["1"]["TP"], m["1"]["FP"], m["1"]["FN"], m["1"]["TN"]) == (1, 1, 1, 5)
    assert m["1"]["Dice"] == 2 / 4 and m["1"]["IoU"] == 1 / 3
    assert (m["2"]["TP"], m["2"]["FN"], m["2"]["n_ref"], m["2"]["n_pred"]) == (1, 1, 2, 1)
    assert m["2"]["Dice"] == 2 / 3


def test_empty_cases():
    empty = np.zeros((3, 3), int)
    some = empty.copy()
    some[1, 1] = 1
    both_empty = case_metrics(empty, empty, [1])["metrics"]["1"]
    assert math.isnan(both_empty["Dice"]) and math.isnan(both_empty["IoU"])
    only_pred = case_metrics(some, empty, [1])["metrics"]["1"]   # reference empty
    assert only_pred["Dice"] == 0
    only_ref = case_metrics(empty, some, [1])["metrics"]["1"]
    assert only_ref["Dice"] == 0


def test_summary_nanmean_and_foreground_mean_strict_json():
    empty = np.zeros((2, 2), int)
    full1 = np.ones((2, 2), int)
    cases = [case_metrics(full1, full1, [1, 2]),      # class 1 Dice 1, class 2 NaN
             case_metrics(empty, full1, [1, 2])]      # class 1 Dice 0, class 2 NaN
    s = summarize(cases, [1, 2])
    assert s["mean"]["1"]["Dice"] == 0.5
    assert math.isnan(s["mean"]["2"]["Dice"])
    assert math.isnan(s["foreground_mean"]["Dice"])   # nnU-Net: plain mean of class means
    text = dumps(s)
    assert "NaN" not in text and json.loads(text)["mean"]["2"]["Dice"] is None
    s1 = summarize(cases[:1], [1])
    assert s1["foreground_mean"]["Dice"] == 1.0
