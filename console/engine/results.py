"""What the finished pipeline stages wrote, put on the snapshot for every client.

The trainer kind knows where its pipeline writes (`Kind.results_source()`, console/kinds/
results.py: foldwatch's files at contracts.layout paths, nnU-Net's in `$nnUNet_results`);
this reads that source on every tick (cheap: its files are re-read only when they change)
and gives each completed stage's row what it produced: the note, the headline Dice (shown in
the val Dice column), the chosen model (the Config column) and the test cases (the Epoch
column).
"""

from __future__ import annotations

from console.kinds.results import ResultsSource, StageResult
from console.protocol.model import ResultsView, RunView


class ResultsReader:
    """The experiment's results, read through its trainer kind's source."""

    def __init__(self, source: ResultsSource) -> None:
        self.source = source

    def read(self) -> ResultsView:
        return self.source.read()

    def class_names(self) -> list[str]:
        """Foreground classes (or regions), in the order of a fold's per-class pseudo-Dice."""
        return list(self.source.class_names().values())

    def stage_result(self, key: str, rv: ResultsView) -> StageResult | None:
        return self.source.stage_result(key, rv)


def apply_stage_result(run: RunView, result: StageResult | None) -> None:
    """A completed stage's row, filled with what it produced (nothing when it produced nothing
    readable: the row keeps its message)."""
    if result is None:
        return
    run.outcome, run.outcome_dice = result.text, result.dice
    run.outcome_model, run.outcome_cases = result.model, result.cases


def enrich(snap, reader: ResultsReader | None) -> None:
    """Put the results and each completed stage's outcome on a snapshot (engine views)."""
    if reader is None:
        return
    snap.results = reader.read()
    snap.class_names = reader.class_names()
    for r in snap.runs:
        if r.kind == "stage" and r.state == "completed":
            apply_stage_result(r, reader.stage_result(r.key, snap.results))
