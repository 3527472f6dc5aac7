"""What the finished pipeline stages wrote, read back for the console, headless and `status`.

Reads the summary files at their contracts.layout paths (nnU-Net's summary.json shape:
`mean` per label value, `foreground_mean`, `metric_per_case`), re-reading a file only when
its modification time changes, so it is cheap on every poll.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from console.protocol.fmt import num
from console.protocol.model import ResultsView, ScoreView
from contracts.layout import Layout, summary_key


class ResultsReader:
    """Reads an experiment's result files; cached per file by modification time."""

    def __init__(self, layout: Layout, configurations: list[str]) -> None:
        self.layout = layout
        self.configurations = list(configurations)
        self._cache: dict[Path, tuple[float, object]] = {}

    def _json(self, path: Path) -> dict | None:
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return None
        hit = self._cache.get(path)
        if hit and hit[0] == mtime:
            return hit[1]  # type: ignore[return-value]
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            data = None                # being written or damaged: shown as absent
        self._cache[path] = (mtime, data)
        return data if isinstance(data, dict) else None

    def _names(self) -> dict[str, str]:
        fp = self._json(self.layout.fingerprint) or {}
        labels = fp.get("labels") if isinstance(fp.get("labels"), dict) else {}
        return {str(v): str(k) for k, v in labels.items()}

    def _region_names(self) -> dict[str, str]:
        """Region-based datasets: the summaries' region key, e.g. "(1, 2)" -> its name."""
        regions = (self._json(self.layout.fingerprint) or {}).get("regions")
        return ({summary_key(v): str(k) for k, v in regions.items() if isinstance(v, list)}
                if isinstance(regions, dict) else {})

    def _score(self, name: str, path: Path, names: dict[str, str]) -> ScoreView | None:
        s = self._json(path)
        if s is None:
            return None
        fg = (s.get("foreground_mean") or {}).get("Dice")
        names = {**names, **self._region_names()}
        per_class = {names.get(str(lab), f"class {lab}"): (m or {}).get("Dice")
                     for lab, m in (s.get("mean") or {}).items()}
        cases = len(s["metric_per_case"]) if isinstance(s.get("metric_per_case"), list) else None
        return ScoreView(name, fg, per_class, cases, str(path))

    def _count_predictions(self, folder: Path) -> int | None:
        try:
            mtime = folder.stat().st_mtime
        except OSError:
            return None
        hit = self._cache.get(folder)
        if hit and hit[0] == mtime:
            return hit[1]  # type: ignore[return-value]
        n = sum(1 for e in os.scandir(folder)
                if e.name.endswith(".nii.gz") and not e.name.startswith("."))
        self._cache[folder] = (mtime, n)
        return n

    def read(self) -> ResultsView:
        lay, names = self.layout, self._names()
        rv = ResultsView(root=str(lay.root))
        for cfg in self.configurations:
            sv = self._score(cfg, lay.crossval(cfg) / "summary.json", names)
            if sv:
                rv.configurations.append(sv)
        best = self._json(lay.best_configuration)
        if best:
            rv.chosen = [str(c) for c in best.get("configurations") or []]
            rv.chosen_dice = best.get("foreground_mean_dice")
            rv.best_path = str(lay.best_configuration)
            for name in best.get("candidates") or {}:
                if "+" in name:
                    sv = self._score(name, lay.ensemble(name.split("+")) / "summary.json", names)
                    if sv:
                        rv.ensembles.append(sv)
            how = lay.root / "how_to_predict.txt"
            rv.how_to_predict = str(how) if how.exists() else None
        post = self._json(lay.postprocessing)
        if post:
            rv.postprocessing = postprocessing_words(post, names, self._region_names())
            rv.postprocessing_dice = (post.get("foreground_mean_dice_before"),
                                      post.get("foreground_mean_dice_after"))
            rv.postprocessing_path = str(lay.postprocessing)
        n = self._count_predictions(lay.predictions)
        if n:
            rv.predicted_cases, rv.predictions_dir = n, str(lay.predictions)
            rv.test = self._score("test set", lay.predictions / "summary.json", names)
        return rv


def postprocessing_words(post: dict, names: dict[str, str],
                         region_names: dict[str, str] | None = None) -> str:
    if post.get("disabled"):
        return "off (" + str(post["disabled"]) + ")"
    parts = []
    if post.get("largest_component_all_foreground"):
        parts.append("largest component of all foreground")
    classes = [names.get(str(c), f"class {c}") for c in post.get("largest_component_classes") or []]
    classes += [(region_names or {}).get(summary_key(r), f"region {summary_key(r)}")
                for r in post.get("largest_component_regions") or []]
    if classes:
        parts.append("largest component of " + ", ".join(classes))
    return " + ".join(parts) if parts else "none: it would not raise the Dice"


def stage_outcome(key: str, rv: ResultsView | None) -> str | None:
    """One line for a completed stage's row: what it produced."""
    if rv is None:
        return None
    if key.startswith("crossval-"):
        sv = next((s for s in rv.configurations if s.name == key[len("crossval-"):]), None)
        if sv is None:
            return None
        classes = ", ".join(f"{k} {num(v)}" for k, v in sv.per_class.items())
        return f"fg Dice {num(sv.foreground_dice)}" + (f" ({classes})" if classes else "")
    if key == "find-best" and rv.chosen:
        return (f"chosen {' + '.join(rv.chosen)} (fg Dice {num(rv.chosen_dice)}); "
                f"postprocessing: {rv.postprocessing or '-'}")
    if key == "predict" and rv.predicted_cases:
        test = f"; test fg Dice {num(rv.test.foreground_dice)}" if rv.test else ""
        return f"{rv.predicted_cases} cases predicted{test}"
    return None


def enrich(snap, reader: ResultsReader | None) -> None:
    """Put the results and each completed stage's outcome on a snapshot (engine views)."""
    if reader is None:
        return
    snap.results = reader.read()
    names = reader._names()
    snap.class_names = [names[k] for k in sorted(names, key=int) if k != "0"]
    for r in snap.runs:
        if r.kind == "stage" and r.state == "completed":
            r.outcome = stage_outcome(r.key, snap.results)
