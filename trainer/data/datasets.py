"""Read a dataset: the nnU-Net v2 raw layout or an MSD/MONAI datalist JSON.

nnU-Net v2: `dataset.json` (channel_names, labels, numTraining, file_ending) next to
`imagesTr/CASE_0000.nii.gz` (+ `_0001`... per channel), `labelsTr/CASE.nii.gz`, `imagesTs/`
and, when present, `labelsTs/`. MSD/MONAI: a JSON with `training: [{image, label}]` and
`test: [...]`, paths relative to the JSON, `labels` {"0": "background", ...} and `modality`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from contracts.errors import ConfigError, DatasetError
from trainer.data.cases import CaseFiles, DatasetInfo

NIFTI_ENDINGS = (".nii.gz", ".nii")


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(f"{path}: not found") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid JSON ({e}); fix the file") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object at the top level")
    return data


def _parse_labels(raw: object, where: str) -> dict[str, int]:
    """nnU-Net `{"background": 0, ...}` or MSD `{"0": "background", ...}` -> name: value."""
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{where}: 'labels' must be a non-empty object such as "
                          '{"background": 0, "organ": 1}')
    labels: dict[str, int] = {}
    for k, v in raw.items():
        if isinstance(v, bool):
            raise ConfigError(f"{where}: labels.{k}: expected an integer label value, got {v!r}")
        if isinstance(v, int):
            labels[str(k)] = v
        elif isinstance(v, str) and re.fullmatch(r"-?\d+", str(k)):   # MSD: value -> name
            labels[v] = int(k)
        elif isinstance(v, list):
            raise ConfigError(f"{where}: labels.{k}: region-based labels (lists) are read from an "
                              "nnU-Net dataset.json only (with regions_class_order)")
        else:
            raise ConfigError(f"{where}: labels.{k}: expected an integer label value, got {v!r}")
    if 0 not in labels.values():
        raise ConfigError(f"{where}: 'labels' must declare background as 0")
    if len(set(labels.values())) != len(labels):
        raise ConfigError(f"{where}: 'labels' declares the same value twice")
    if sorted(labels.values()) != list(range(len(labels))):
        raise ConfigError(f"{where}: label values must be consecutive from 0, got "
                          f"{sorted(labels.values())}")
    return dict(sorted(labels.items(), key=lambda kv: kv[1]))


def _parse_regions(raw: dict, order: object, where: str
                   ) -> tuple[dict[str, int], dict[str, list[int]], list[int]]:
    """nnU-Net region-based labels: {"background": 0, "whole": [1, 2, 3], "core": [2, 3], ...}.

    Returns (labels: every label value in the files, named "label N"; regions; class order).
    """
    regions: dict[str, list[int]] = {}
    for name, v in raw.items():
        values = v if isinstance(v, list) else [v]
        if not values or not all(isinstance(x, int) and not isinstance(x, bool) and x > 0
                                 for x in values):
            if v == 0 or v == [0]:
                continue
            raise ConfigError(f"{where}: labels.{name}: a region must be a list of positive label "
                              f"values such as [1, 2], got {v!r}")
        regions[str(name)] = sorted(set(values))
    if not isinstance(order, list) or len(order) != len(regions) or not all(
            isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in order):
        raise ConfigError(f"{where}: region-based labels need 'regions_class_order': one positive "
                          f"label value per region ({len(regions)}), in the order they are "
                          "painted into the exported label map, e.g. [1, 2, 3]; got "
                          f"{order!r}")
    values = sorted({x for vals in regions.values() for x in vals})
    labels = {"background": 0} | {f"label {x}": x for x in values}
    return labels, regions, list(order)


def _parse_channels(raw: object, where: str, key: str) -> list[str]:
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{where}: '{key}' must be a non-empty object such as "
                          '{"0": "CT"}')
    try:
        items = sorted(((int(k), str(v)) for k, v in raw.items()))
    except ValueError:
        raise ConfigError(f"{where}: '{key}' keys must be channel numbers \"0\", \"1\", ...") from None
    if [k for k, _ in items] != list(range(len(items))):
        raise ConfigError(f"{where}: '{key}' keys must be 0..{len(items) - 1}")
    return [v for _, v in items]


def _case_id(name: str, ending: str) -> str | None:
    return name[: -len(ending)] if name.endswith(ending) else None


def cases_in_folder(folder: str | Path, num_channels: int, file_ending: str = ".nii.gz",
                    labels_folder: str | Path | None = None) -> list[CaseFiles]:
    """Cases named CASE_0000<ending> (+ _0001...) in a folder; DatasetError lists missing channels."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: folder not found")
    ids: set[str] = set()
    stray: list[str] = []
    extra: list[Path] = []          # CASE_000N with N beyond the declared channels
    for p in sorted(folder.iterdir()):
        stem = _case_id(p.name, file_ending)
        if stem is None or p.name.startswith("."):
            continue
        m = re.fullmatch(r"(.+)_(\d{4})", stem)
        if m:
            ids.add(m.group(1))
            if int(m.group(2)) >= num_channels:
                extra.append(p)
        else:
            stray.append(p.name)
    problems = [f"{folder / s}: not named CASE_XXXX{file_ending} (channel number missing); "
                f"rename it to e.g. {s[:-len(file_ending)]}_0000{file_ending}" for s in stray]
    problems += [f"{p}: case {p.name[:-len(file_ending) - 5]}: channel file "
                 f"_{p.name[-len(file_ending) - 4:-len(file_ending)]} but dataset.json declares "
                 f"{num_channels} channel(s) (_0000.._{num_channels - 1:04d}); remove the file or "
                 "declare the channel in channel_names" for p in extra]
    cases = []
    for cid in sorted(ids):
        images = [folder / f"{cid}_{c:04d}{file_ending}" for c in range(num_channels)]
        for c, p in enumerate(images):
            if not p.exists():
                problems.append(f"{p}: case {cid}: channel {c} is missing; every case needs "
                                f"{num_channels} channel file(s) _0000.._{num_channels - 1:04d}")
        label = None
        if labels_folder is not None:
            lp = Path(labels_folder) / f"{cid}{file_ending}"
            label = lp if lp.exists() else None
        cases.append(CaseFiles(cid, images, label))
    if problems:
        raise DatasetError(problems, header=f"{folder}: images not in nnU-Net naming")
    return cases


def _scan(folder: Path, num_channels: int, ending: str, labels_folder: Path | None,
          need_labels: bool, problems: list[str]) -> list[CaseFiles]:
    """Like cases_in_folder, but problems are collected (check-dataset reports them all)."""
    if not folder.is_dir():
        return []
    try:
        cases = cases_in_folder(folder, num_channels, ending, labels_folder)
    except DatasetError as e:
        problems.extend(e.problems)
        cases = []
        # keep going with what is there so that later checks still run
        ids = sorted({m.group(1) for p in folder.iterdir()
                      if (s := _case_id(p.name, ending)) and (m := re.fullmatch(r"(.+)_(\d{4})", s))})
        for cid in ids:
            images = [folder / f"{cid}_{c:04d}{ending}" for c in range(num_channels)]
            lp = labels_folder / f"{cid}{ending}" if labels_folder else None
            cases.append(CaseFiles(cid, images, lp if lp and lp.exists() else None))
    if need_labels and labels_folder is not None:
        for c in cases:
            if c.label is None:
                problems.append(f"{labels_folder / (c.case_id + ending)}: case {c.case_id}: label "
                                f"file is missing; add it or remove the case's images")
        if labels_folder.is_dir():
            known = {c.case_id for c in cases}
            for p in sorted(labels_folder.iterdir()):
                cid = _case_id(p.name, ending)
                if cid and cid not in known and not p.name.startswith("."):
                    problems.append(f"{p}: case {cid}: label without images in {folder}")
    return cases


def _load_nnunet(root: Path) -> DatasetInfo:
    dj = root / "dataset.json"
    if not dj.exists():
        raise DatasetError(f"{root}: no dataset.json; expected an nnU-Net v2 raw dataset folder "
                           "(dataset.json, imagesTr/, labelsTr/) or an MSD/MONAI datalist .json")
    meta = _read_json(dj)
    for key in ("channel_names", "labels", "file_ending"):
        if key not in meta:
            alt = " (nnU-Net v1 'modality' is called 'channel_names' in v2)" \
                if key == "channel_names" and "modality" in meta else ""
            raise ConfigError(f"{dj}: missing key '{key}'{alt}")
    channels = _parse_channels(meta["channel_names"], str(dj), "channel_names")
    regions, order = {}, []
    if isinstance(meta["labels"], dict) and any(isinstance(v, list) for v in meta["labels"].values()):
        labels, regions, order = _parse_regions(meta["labels"], meta.get("regions_class_order"),
                                                str(dj))
    else:
        labels = _parse_labels(meta["labels"], str(dj))
    ending = meta["file_ending"]
    if not isinstance(ending, str) or ending not in NIFTI_ENDINGS:
        raise ConfigError(f"{dj}: file_ending must be one of {', '.join(NIFTI_ENDINGS)} "
                          f"(NIfTI), got {ending!r}")
    num = meta.get("numTraining")
    if num is not None and (not isinstance(num, int) or isinstance(num, bool) or num < 0):
        raise ConfigError(f"{dj}: numTraining must be a non-negative integer, got {num!r}")
    problems: list[str] = []
    if not (root / "imagesTr").is_dir():
        raise DatasetError(f"{root / 'imagesTr'}: folder not found; training images go there")
    cases = _scan(root / "imagesTr", len(channels), ending, root / "labelsTr", True, problems)
    lts = root / "labelsTs"
    test = _scan(root / "imagesTs", len(channels), ending, lts if lts.is_dir() else None,
                 False, problems)
    return DatasetInfo(root, cases, test, labels, channels, ending, num, dj, problems,
                       regions, order)


def _msd_path(base: Path, value: object, where: str, problems: list[str]) -> Path | None:
    if not isinstance(value, str) or not value:
        problems.append(f"{where}: expected a file path string, got {value!r}")
        return None
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base / p)


def _msd_case_id(path: Path) -> str:
    name = path.name
    for e in NIFTI_ENDINGS:
        if name.endswith(e):
            return name[: -len(e)]
    return path.stem


def _load_datalist(path: Path) -> DatasetInfo:
    meta = _read_json(path)
    base = path.parent
    if "training" not in meta or not isinstance(meta["training"], list):
        raise ConfigError(f"{path}: expected a 'training' list of {{\"image\": ..., \"label\": ...}}")
    labels = _parse_labels(meta.get("labels"), str(path))
    modality = meta.get("modality") or meta.get("channel_names") or {"0": "image"}
    channels = _parse_channels(modality, str(path), "modality")
    problems: list[str] = []

    def entries(key: str, need_label: bool) -> list[CaseFiles]:
        out, seen = [], set()
        for i, item in enumerate(meta.get(key) or []):
            where = f"{path}: {key}[{i}]"
            if isinstance(item, str):     # MSD test lists are bare paths
                item = {"image": item}
            if not isinstance(item, dict) or "image" not in item:
                problems.append(f"{where}: expected an object with 'image' (and 'label')")
                continue
            imgs = item["image"] if isinstance(item["image"], list) else [item["image"]]
            images = [p for j, v in enumerate(imgs)
                      if (p := _msd_path(base, v, f"{where}.image", problems)) is not None]
            if not images:
                continue
            if len(images) != len(channels) and len(images) != 1:
                problems.append(f"{where}: {len(images)} image files but {len(channels)} channels "
                                "declared in 'modality'")
            label = None
            if "label" in item:
                label = _msd_path(base, item["label"], f"{where}.label", problems)
            elif need_label:
                problems.append(f"{where}: training entry without 'label'")
            cid = _msd_case_id(images[0])
            cid = re.sub(r"_0000$", "", cid)
            if cid in seen:
                problems.append(f"{where}: case id {cid} appears twice")
                continue
            seen.add(cid)
            out.append(CaseFiles(cid, images, label))
        return sorted(out, key=lambda c: c.case_id)

    cases = entries("training", True)
    test = entries("test", False)
    ending = ".nii" if cases and str(cases[0].images[0]).endswith(".nii") else ".nii.gz"
    return DatasetInfo(base, cases, test, labels, channels, ending, meta.get("numTraining"),
                       path, problems)


def load_dataset(path: str | Path) -> DatasetInfo:
    """Read a dataset folder (nnU-Net v2 raw) or datalist JSON (MSD/MONAI)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DatasetError(f"{path}: dataset not found; set `dataset:` in the experiment file to an "
                           "nnU-Net v2 raw folder or an MSD/MONAI datalist .json")
    if path.is_dir():
        from trainer.data.slices import is_slice_folder, load_slice_folder
        if is_slice_folder(path) and not (path / "dataset.json").exists():
            return load_slice_folder(path)
        return _load_nnunet(path)
    if path.name == "dataset.json" and (path.parent / "imagesTr").is_dir():
        return _load_nnunet(path.parent)
    if path.suffix == ".json":
        return _load_datalist(path)
    raise DatasetError(f"{path}: not a dataset folder or a datalist .json")


def require_consistent(info: DatasetInfo) -> DatasetInfo:
    """Raise DatasetError with every layout problem found while reading (missing labels...)."""
    if info.problems:
        raise DatasetError(info.problems, header=f"{info.source or info.root}: dataset problems")
    if not info.cases:
        raise DatasetError(f"{info.source or info.root}: no training cases found")
    return info
