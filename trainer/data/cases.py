"""What a dataset is once read, whatever its layout: its cases' files, labels and channels
(trainer.data.datasets reads nnU-Net folders and datalists, trainer.data.slices image
folders)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class CaseFiles:
    case_id: str
    images: list[Path]            # one file per channel, channel order
    label: Path | None = None


@dataclass
class DatasetInfo:
    root: Path                    # the dataset folder (nnU-Net) or the datalist's folder
    cases: list[CaseFiles]        # training cases, sorted by id
    test_cases: list[CaseFiles]
    labels: dict[str, int]        # name -> value, background included
    channel_names: list[str]
    file_ending: str = ".nii.gz"
    num_training: int | None = None   # as declared in dataset.json
    source: Path | None = None        # dataset.json or the datalist file
    problems: list[str] = field(default_factory=list)  # layout problems found while reading
    regions: dict[str, list[int]] = field(default_factory=dict)   # region-based: name -> labels
    regions_class_order: list[int] = field(default_factory=list)  # label written per region

    @property
    def case_ids(self) -> list[str]:
        return [c.case_id for c in self.cases]
