"""Where a trainer kind's pipeline wrote its results, read back for the views.

Each trainer kind names a results source (`Kind.results_source()`): foldwatch's own trainer
writes the files of contracts.layout (`LayoutResults`, here), nnU-Net v2 its own files in
`$nnUNet_results` (console/kinds/nnunet_results.py). console.engine.results asks the source
for the Results view and for each completed stage's result, and puts them on the snapshot.
Every summary is in nnU-Net's summary.json shape (`mean` per label value or region,
`foreground_mean`, `metric_per_case`), and every file is re-read only when its modification
time changes, so reading on every tick is cheap.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from console.protocol.fmt import num
from console.protocol.model import ResultsView, ScoreView
from contracts.layout import Layout, crossval_stage, summary_key


@dataclass
class StageResult:
    """What a completed stage produced, for its row in the runs table."""
    text: str                       # the note: one line
    dice: float | None = None       # its headline foreground Dice (the val Dice column)
    model: str | None = None        # the chosen model it is about ("2d+3d_fullres")
    cases: int | None = None        # the test cases it produced or evaluated


class ResultsSource(Protocol):
    def read(self) -> ResultsView: ...
    def class_names(self) -> dict[str, str]: ...     # summary key ("1", "(1, 2)") -> name
    def stage_result(self, key: str, rv: ResultsView) -> StageResult | None: ...


class SummaryFiles:
    """JSON files and prediction folders, each re-read only when its mtime changes."""

    def __init__(self) -> None:
        self._cache: dict[tuple[Path, str], tuple[float, object]] = {}

    def _cached(self, path: Path, what: str, load):
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return None
        hit = self._cache.get((path, what))
        if hit and hit[0] == mtime:
            return hit[1]
        value = load()
        self._cache[(path, what)] = (mtime, value)
        return value

    def json(self, path: Path | str | None) -> dict | None:
        if path is None:
            return None
        path = Path(path)

        def load():
            try:
                return json.loads(path.read_text())
            except (OSError, ValueError):
                return None            # being written or damaged: shown as absent
        data = self._cached(path, "json", load)
        return data if isinstance(data, dict) else None

    def count(self, folder: Path, ending: str) -> int | None:
        """Files named *<ending> in `folder` (not hidden: a file being written is no case)."""
        def load():
            try:
                return sum(1 for e in os.scandir(folder)
                           if e.name.endswith(ending) and not e.name.startswith("."))
            except OSError:
                return None
        return self._cached(folder, "count:" + ending, load)

    def score(self, name: str, path: Path, names: dict[str, str]) -> ScoreView | None:
        """A summary.json as a row: foreground mean Dice, Dice per class by name, cases."""
        s = self.json(path)
        if s is None:
            return None
        fg = (s.get("foreground_mean") or {}).get("Dice")
        per_class = {names.get(str(lab), f"class {lab}"): (m or {}).get("Dice")
                     for lab, m in (s.get("mean") or {}).items()
                     if str(lab) != "0"}
        cases = len(s["metric_per_case"]) if isinstance(s.get("metric_per_case"), list) else None
        return ScoreView(name, fg, per_class, cases, str(path))


def label_names(labels: object, regions: bool = False) -> dict[str, str]:
    """dataset.json's (or the fingerprint's) `labels` as summary key -> name, background out,
    in the order of a fold's per-class pseudo-Dice: labels by value, {"organ": 1} ->
    {"1": "organ"}; regions as declared, {"tumour": [1, 2], "core": 2} -> {"(1, 2)": "tumour",
    "(2,)": "core"} (nnU-Net makes a single value a one-label region)."""
    if not isinstance(labels, dict):
        return {}
    out = []
    for name, value in labels.items():
        if regions and not isinstance(value, (list, tuple)):
            value = [value]
        try:
            key = summary_key(value)
        except (TypeError, ValueError):
            continue
        if key not in ("0", "(0,)"):
            out.append((key, str(name)))
    if not regions:
        out.sort(key=lambda kv: int(kv[0]))
    return dict(out)


def postprocessing_words(post: dict, names: dict[str, str]) -> str:
    """foldwatch's postprocessing.json decision in words."""
    if post.get("disabled"):
        return "off (" + str(post["disabled"]) + ")"
    parts = []
    if post.get("largest_component_all_foreground"):
        parts.append("largest component of all foreground")
    classes = [names.get(str(c), f"class {c}") for c in post.get("largest_component_classes") or []]
    classes += [names.get(summary_key(r), f"region {summary_key(r)}")
                for r in post.get("largest_component_regions") or []]
    if classes:
        parts.append("largest component of " + ", ".join(classes))
    return " + ".join(parts) if parts else "none: it would not raise the Dice"


# -- the stages every kind words the same way ---------------------------------------------------
def crossval_result(rv: ResultsView, configuration: str) -> StageResult | None:
    sv = next((s for s in rv.configurations if s.name == configuration), None)
    if sv is None:
        return None
    classes = ", ".join(f"{k} {num(v)}" for k, v in sv.per_class.items())
    return StageResult(f"fg Dice {num(sv.foreground_dice)}" + (f" ({classes})" if classes else ""),
                       dice=sv.foreground_dice, cases=None)


def chosen_model(rv: ResultsView) -> str | None:
    return "+".join(rv.chosen) if rv.chosen else None


def find_best_result(rv: ResultsView) -> StageResult | None:
    if not rv.chosen:
        return None
    return StageResult(f"chosen {' + '.join(rv.chosen)} (fg Dice {num(rv.chosen_dice)}); "
                       f"postprocessing: {rv.postprocessing or '-'}",
                       dice=rv.chosen_dice, model=chosen_model(rv))


def test_result(rv: ResultsView) -> StageResult | None:
    """The final predictions, with the test set's Dice where it has labels."""
    if not rv.predicted_cases:
        return None
    test = f"; test fg Dice {num(rv.test.foreground_dice)}" if rv.test else ""
    return StageResult(f"{rv.predicted_cases} cases predicted{test}",
                       dice=rv.test.foreground_dice if rv.test else None,
                       model=chosen_model(rv), cases=rv.predicted_cases)


class LayoutResults:
    """foldwatch's own trainer: the files of contracts.layout (docs/pipeline.md)."""

    def __init__(self, layout: Layout, configurations: list[str]) -> None:
        self.layout = layout
        self.configurations = list(configurations)
        self.files = SummaryFiles()

    def class_names(self) -> dict[str, str]:
        fp = self.files.json(self.layout.fingerprint) or {}
        if isinstance(fp.get("regions"), dict) and fp["regions"]:
            return label_names(fp["regions"], regions=True)
        return label_names(fp.get("labels"))

    def _file_ending(self) -> str:
        for cfg in self.configurations:
            ending = (self.files.json(self.layout.plan(cfg)) or {}).get("file_ending")
            if isinstance(ending, str) and ending:
                return ending
        return ".nii.gz"

    def read(self) -> ResultsView:
        lay, names, files = self.layout, self.class_names(), self.files
        rv = ResultsView(root=str(lay.root))
        for cfg in self.configurations:
            sv = files.score(cfg, lay.crossval(cfg) / "summary.json", names)
            if sv:
                rv.configurations.append(sv)
        best = files.json(lay.best_configuration)
        if best:
            rv.chosen = [str(c) for c in best.get("configurations") or []]
            rv.chosen_dice = best.get("foreground_mean_dice")
            rv.best_path = str(lay.best_configuration)
            for name in best.get("candidates") or {}:
                if "+" in name:
                    sv = files.score(name, lay.ensemble(name.split("+")) / "summary.json", names)
                    if sv:
                        rv.ensembles.append(sv)
            how = lay.root / "how_to_predict.txt"
            rv.how_to_predict = str(how) if how.exists() else None
        post = files.json(lay.postprocessing)
        if post:
            rv.postprocessing = postprocessing_words(post, names)
            rv.postprocessing_dice = (post.get("foreground_mean_dice_before"),
                                      post.get("foreground_mean_dice_after"))
            rv.postprocessing_path = str(lay.postprocessing)
        n = files.count(lay.predictions, self._file_ending())
        if n:
            rv.predicted_cases, rv.predictions_dir = n, str(lay.predictions)
            rv.test = files.score("test set", lay.predictions / "summary.json", names)
        return rv

    def stage_result(self, key: str, rv: ResultsView) -> StageResult | None:
        for cfg in self.configurations:
            if key == crossval_stage(cfg):
                return crossval_result(rv, cfg)
        if key == "find-best":
            return find_best_result(rv)
        if key == "predict":
            return test_result(rv)
        return None


class NoResults:
    """A kind without pipeline stages (`trainer: command`): nothing to read."""

    def __init__(self, layout: Layout) -> None:
        self.root = str(layout.root)

    def read(self) -> ResultsView:
        return ResultsView(root=self.root)

    def class_names(self) -> dict[str, str]:
        return {}

    def stage_result(self, key: str, rv: ResultsView) -> StageResult | None:
        return None
