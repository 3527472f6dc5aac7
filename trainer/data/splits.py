"""5-fold cross-validation splits exactly as nnU-Net makes them, and user-supplied splits.

nnU-Net: sklearn KFold(5, shuffle=True, random_state=12345) over the sorted case ids. The
same permutation is computed here with numpy (RandomState.shuffle, as sklearn does), so
sklearn is not needed at run time; tests/test_planning.py compares with real sklearn.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from contracts.errors import ConfigError, DatasetError


def kfold_splits(case_ids: list[str], n_folds: int = 5, seed: int = 12345) -> list[dict]:
    """[{"train": [...], "val": [...]}] per fold, ids in sorted order within each list."""
    keys = sorted(case_ids)
    n = len(keys)
    if n < n_folds:
        raise DatasetError(f"{n} training case(s): {n_folds}-fold cross-validation needs at "
                           f"least {n_folds}")
    order = np.arange(n)
    np.random.RandomState(seed).shuffle(order)
    sizes = np.full(n_folds, n // n_folds)
    sizes[: n % n_folds] += 1
    splits, start = [], 0
    for size in sizes:
        val_mask = np.zeros(n, bool)
        val_mask[order[start:start + size]] = True
        start += size
        splits.append({"train": [keys[i] for i in np.flatnonzero(~val_mask)],
                       "val": [keys[i] for i in np.flatnonzero(val_mask)]})
    return splits


def percent_split(case_ids: list[str], percent: float, seed: int = 12345) -> list[dict]:
    """One fold: `percent` % of the cases (at least 1) held out for validation, at random."""
    keys = sorted(case_ids)
    n_val = max(1, int(len(keys) * percent / 100))
    if len(keys) < 2 or n_val >= len(keys):
        raise DatasetError(f"{len(keys)} training case(s): validation_percent {percent:g} leaves "
                           "no case to train on; add cases or lower it")
    order = np.random.RandomState(seed).permutation(len(keys))
    val = set(order[:n_val].tolist())
    return [{"train": [k for i, k in enumerate(keys) if i not in val],
             "val": [k for i, k in enumerate(keys) if i in val]}]


def validate_splits(splits: object, case_ids: list[str], where: str, folds: list[int]) -> list[dict]:
    """Check a splits list (nnU-Net splits_final.json format); ConfigError lists every problem."""
    if not isinstance(splits, list) or not splits:
        raise ConfigError(f"{where}: expected a list of {{\"train\": [...], \"val\": [...]}}, one per fold")
    known = set(case_ids)
    problems = []
    if len(splits) <= max(folds):
        problems.append(f"{len(splits)} fold(s) given but the experiment trains fold {max(folds)}; "
                        "give 5 folds or change `folds:`")
    for k, fold in enumerate(splits):
        if not isinstance(fold, dict) or not isinstance(fold.get("train"), list) \
                or not isinstance(fold.get("val"), list):
            problems.append(f"fold {k}: expected {{\"train\": [...], \"val\": [...]}}")
            continue
        train, val = [str(c) for c in fold["train"]], [str(c) for c in fold["val"]]
        unknown = sorted((set(train) | set(val)) - known)
        if unknown:
            problems.append(f"fold {k}: case(s) not in the dataset: {', '.join(unknown[:10])}"
                            + (" ..." if len(unknown) > 10 else ""))
        both = sorted(set(train) & set(val))
        if both:
            problems.append(f"fold {k}: case(s) in both train and val: {', '.join(both[:10])}")
        if not train or not val:
            problems.append(f"fold {k}: empty train or val list")
    if problems:
        raise ConfigError(f"{where}: invalid splits:\n" + "\n".join(f"  {p}" for p in problems))
    return [{"train": [str(c) for c in f["train"]], "val": [str(c) for c in f["val"]]}
            for f in splits]


def read_splits_file(path: Path) -> object:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: splits file not found (experiment `splits:`)") from None
    except ValueError as e:
        raise ConfigError(f"{path}: not valid JSON ({e})") from None
