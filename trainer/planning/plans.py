"""The plan of one configuration: plans/<configuration>.json.

Written by `python -m trainer plan`, read by preprocessing, training and inference.
Spatial lists are in the canonical array order (z, y, x) used by preprocessed arrays.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from contracts.errors import ConfigError
from contracts.jsonio import atomic_write_json


@dataclass
class ChannelNorm:
    name: str                      # channel name from dataset.json, e.g. "CT"
    scheme: str                    # "ct": clip + global z-score; "zscore": per-case z-score
    clip: list[float] | None = None
    mean: float | None = None
    std: float | None = None


_ADDED_LATER = {"network": "unet", "encoder_blocks": None, "decoder_convs": None,
                "previous_stage": None}


@dataclass
class Plan:
    configuration: str
    dim: int                       # 2 or 3
    spacing: list[float]           # target spacing (z, y, x), mm; for 2d z is kept as is
    patch_size: list[int]          # `dim` values
    batch_size: int
    median_shape: list[int]        # median case shape after resampling (z, y, x)
    kernel_sizes: list[list[int]]  # DynUNet, per level
    strides: list[list[int]]       # DynUNet, per level (first is all ones)
    filters: list[int]             # DynUNet, per level
    normalization: list[ChannelNorm]
    labels: dict[str, int]         # dataset.json labels, background included
    channel_names: list[str]
    file_ending: str = ".nii.gz"
    extra: dict = field(default_factory=dict)   # anything else worth recording
    network: str = "unet"          # "unet" (DynUNet) or "resenc" (residual encoder, plain decoder)
    encoder_blocks: list[int] | None = None     # resenc: residual blocks per encoder stage
    decoder_convs: list[int] | None = None      # resenc: convolutions per decoder stage
    previous_stage: str | None = None           # cascade: the configuration whose prediction
                                                # enters as one-hot extra input channels
    # Region-based (nnU-Net regions_class_order): one sigmoid output per region.
    regions: dict[str, list[int]] = field(default_factory=dict)
    regions_class_order: list[int] = field(default_factory=list)

    @property
    def has_regions(self) -> bool:
        return bool(self.regions)

    @property
    def num_classes(self) -> int:
        """Network outputs: one per region (sigmoid), else one per label (softmax)."""
        return len(self.regions) if self.regions else len(self.labels)

    @property
    def foreground_labels(self) -> list[int]:
        """Label values in the files, background excluded (foreground sampling uses them)."""
        return sorted(v for v in self.labels.values() if v != 0)

    @property
    def in_channels(self) -> int:
        """Image channels, plus one per foreground label of the previous stage (nnU-Net's cascade)."""
        extra = len(self.foreground_labels) if self.previous_stage else 0
        return len(self.channel_names) + extra

    @property
    def eval_keys(self) -> list:
        """What is scored: the foreground labels, or each region as a tuple of its labels."""
        if self.regions:
            return [tuple(v) for v in self.regions.values()]
        return self.foreground_labels

    def to_dict(self) -> dict:
        d = asdict(self)
        if not self.regions:      # plans without regions keep their digest (resume stays allowed)
            d.pop("regions"), d.pop("regions_class_order")
        return d

    def digest(self) -> str:
        """Hash of everything that changes what the network sees; checkpoints record it."""
        d = self.to_dict()
        for key, default in _ADDED_LATER.items():   # plans written before these keep their digest
            if d.get(key) == default:
                d.pop(key)
        text = json.dumps(d, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def save(self, path: str | Path) -> None:
        atomic_write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, data: dict) -> "Plan":
        data = dict(data)
        data["normalization"] = [ChannelNorm(**c) for c in data["normalization"]]
        return cls(**data)

    @classmethod
    def load(cls, path: str | Path) -> "Plan":
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"{path}: no plan yet; run `python -m trainer plan --experiment FILE` "
                              "(the console does this before training)")
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (ValueError, TypeError, KeyError) as e:
            raise ConfigError(f"{path}: unreadable plan ({e}); re-run `python -m trainer plan`") from None
