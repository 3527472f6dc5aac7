"""The experiment file (ARCHITECTURE.md section 1): schema, loading and error messages.

One module for both sides. It imports pydantic and yaml only, never torch, so the console
can validate a file on a login node. Unknown keys are errors; every error names the file,
the field path and what was expected.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal, Union

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from .bridge_settings import Export, Metrics, Notify
from .errors import ConfigError
from .kinds import CommandSettings, NnunetSettings
from .layout import Layout
from .slurm_settings import Slurm
from .strict import PositiveInt, Strict

CONFIGURATION_NAMES = ("2d", "3d_fullres", "3d_lowres", "3d_cascade_fullres")
# nnU-Net's network presets: the plain U-Net and the residual-encoder U-Nets M/L/XL
PRESETS = ("unet", "resenc_m", "resenc_l", "resenc_xl")
CASCADE, LOWRES = "3d_cascade_fullres", "3d_lowres"


class Configuration(Strict):
    """Hyperparameters of one nnU-Net configuration (2d, 3d_fullres, ...)."""

    patch_size: Union[Literal["auto"], list[PositiveInt]] = "auto"
    spacing: Union[Literal["auto"], list[Annotated[float, Field(gt=0)]]] = "auto"
    voxel_budget: PositiveInt | None = None       # auto patch: max voxels per patch (else VRAM)
    preset: Literal["unet", "resenc_m", "resenc_l", "resenc_xl"] = "unet"
    vram_target_gb: Annotated[float, Field(gt=0)] | None = None   # None: the preset's (8/8/24/40)
    batch_size: Union[Literal["auto"], PositiveInt] = 2           # auto: nnU-Net's planned batch
    epochs: PositiveInt = 1000
    iterations_per_epoch: PositiveInt = 250
    val_iterations: PositiveInt = 50
    learning_rate: Annotated[float, Field(gt=0)] = 0.01
    weight_decay: Annotated[float, Field(ge=0)] = 3e-5
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.99
    grad_clip: Annotated[float, Field(gt=0)] = 12.0
    amp: bool = True                              # on CUDA only
    grad_accumulation: PositiveInt = 1
    grad_checkpointing: bool = False
    deep_supervision: bool = True
    base_features: PositiveInt = 32
    max_features: PositiveInt = 320
    oversample_foreground: Annotated[float, Field(ge=0, le=1)] = 0.33
    num_workers: Union[Literal["auto"], Annotated[int, Field(ge=0)]] = "auto"  # data workers
    seed: int = 12345
    tta_mirroring: bool = True
    sliding_window_overlap: Annotated[float, Field(ge=0, lt=1)] = 0.5

    @field_validator("patch_size", "spacing")
    @classmethod
    def _two_or_three(cls, v):
        if isinstance(v, list) and len(v) not in (2, 3):
            raise ValueError("expected 'auto' or a list of 2 (2d) or 3 (3d) numbers")
        return v


class Devices(Strict):
    gpus: Union[Literal["all"], list[Annotated[int, Field(ge=0)]]] = "all"
    runs_per_gpu: PositiveInt = 1
    min_free_vram_gb: Annotated[float, Field(ge=0)] = 4.0
    share_with_foreign: bool = False   # a GPU running someone else's compute process is busy
    cpu_slots: PositiveInt = 2         # used when there is no NVIDIA GPU
    cpu_threads_per_run: Union[Literal["auto"], PositiveInt] = "auto"


class Watchdog(Strict):
    enabled: bool = True
    stall_timeout_s: Annotated[float, Field(gt=0)] = 900
    max_restarts: Annotated[int, Field(ge=0)] = 5
    backoff_initial_s: Annotated[float, Field(ge=0)] = 5
    backoff_max_s: Annotated[float, Field(ge=0)] = 300
    grace_period_s: Annotated[float, Field(ge=0)] = 30
    auto_fit_on_oom: bool = True


class Supervision(Strict):
    """The experiment's supervisor process (docs/console-engine.md, "The supervisor")."""
    linger_s: Annotated[float, Field(ge=0)] = 600   # finished and idle this long: it exits


class Pipeline(Strict):
    evaluate: bool = True
    find_best: bool = True
    postprocess: bool = True
    predict_test: bool = True


class Previews(Strict):
    """Prediction previews the trainer writes during training (docs/pictures.md)."""
    enabled: bool = True
    cases: Annotated[int, Field(ge=0, le=16)] = 2          # fixed validation cases shown
    scored_cases: Annotated[int, Field(ge=1, le=64)] = 8   # cases scored to find the worst
    every_epochs: PositiveInt = 1


class Experiment(Strict):
    experiment: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
    trainer: Literal["foldwatch", "nnunetv2", "command"] = "foldwatch"   # docs/trainers.md
    dataset: Path | None = None         # required by trainer: foldwatch
    results: Path = Path("results")
    folds: list[Annotated[int, Field(ge=0, le=4)]] = [0, 1, 2, 3, 4]
    splits: Path | None = None          # a user-supplied splits.json (nnU-Net format)
    # one random train/validation split with this share of the cases held out (Pytorch-UNet's
    # --validation), instead of 5-fold cross-validation; folds then default to [0]
    validation_percent: Annotated[float, Field(gt=0, lt=100)] | None = None
    test_images: Path | None = None     # default: the dataset's imagesTs
    configurations: dict[str, Configuration]
    devices: Devices = Devices()
    watchdog: Watchdog = Watchdog()
    supervisor: Supervision = Supervision()
    pipeline: Pipeline = Pipeline()
    previews: Previews = Previews()
    export: Export = Export()
    notify: Notify = Notify()
    metrics: Metrics = Metrics()          # Prometheus metrics from the supervisor (off)
    backend: Literal["local", "slurm"] = "local"
    slurm: Slurm = Slurm()              # used when backend is slurm; ignored otherwise
    nnunet: NnunetSettings | None = None      # trainer: nnunetv2
    command: CommandSettings | None = None    # trainer: command

    # Set by load_experiment: the file it came from (paths are relative to its folder).
    source: Path | None = Field(default=None, exclude=True)

    @field_validator("configurations")
    @classmethod
    def _some_configurations(cls, v):
        if not v:
            raise ValueError("expected at least one configuration")
        return v

    @model_validator(mode="after")
    def _kind_sections(self):
        problems = kind_problems(self.model_dump(exclude={"source"}))
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @field_validator("folds")
    @classmethod
    def _unique_folds(cls, v):
        if len(set(v)) != len(v):
            raise ValueError("folds are listed twice")
        if not v:
            raise ValueError("expected at least one fold")
        return sorted(v)

    @model_validator(mode="before")
    @classmethod
    def _one_split_one_fold(cls, data):
        if isinstance(data, dict) and data.get("validation_percent") is not None:
            if data.get("splits") is not None:
                raise ValueError("validation_percent and splits both choose the splits; keep one")
            folds = data.get("folds", [0])
            if folds != [0]:
                raise ValueError("validation_percent makes one train/validation split: "
                                 f"folds must be [0], got {folds}")
            data = {**data, "folds": [0]}
        return data

    @model_validator(mode="after")
    def _dims_match(self):
        for name, cfg in self.configurations.items():
            want = 2 if name == "2d" else 3
            for field in ("patch_size", "spacing"):
                value = getattr(cfg, field)
                if isinstance(value, list) and len(value) != want:
                    raise ValueError(f"configurations.{name}.{field}: {name} needs {want} "
                                     f"numbers, got {len(value)}")
        if CASCADE in self.configurations:
            # nnU-Net's cascade: stage 2 reads stage 1's prediction of EVERY training case, each
            # made by the 3d_lowres fold that did not train on it, so all 5 lowres folds must exist
            if LOWRES not in self.configurations:
                raise ValueError(f"configurations.{CASCADE}: needs {LOWRES} as well (its first "
                                 f"stage); add a {LOWRES} entry or remove {CASCADE}")
            # trainer: nnunetv2 checks this against nnU-Net's splits (console/kinds/nnunet.py)
            if self.trainer != "nnunetv2" and self.folds != [0, 1, 2, 3, 4]:
                raise ValueError(f"configurations.{CASCADE}: needs all five folds (folds: "
                                 f"[0, 1, 2, 3, 4]) because every training case must have a "
                                 f"{LOWRES} prediction from the fold that did not train on it")
        return self

    @property
    def base_dir(self) -> Path:
        return self.source.parent if self.source else Path.cwd()

    def resolve(self, p: Path) -> Path:
        """A path from the file, relative to the file's folder."""
        p = Path(p).expanduser()
        return p if p.is_absolute() else (self.base_dir / p).resolve()

    @property
    def dataset_path(self) -> Path:
        if self.dataset is None:
            raise ConfigError(f"{self.source}: this experiment has no `dataset:`")
        return self.resolve(self.dataset)

    @property
    def layout(self) -> Layout:
        return Layout(self.resolve(self.results) / self.experiment)

    @property
    def wandb_by_trainer(self) -> bool:
        """export.wandb is written by the folds themselves (nnU-Net's own W&B logger, switched
        on in each fold's environment), so foldwatch's exporter writes no second run."""
        return self.export.wandb is not None and self.trainer == "nnunetv2"

    @property
    def wandb_project(self) -> str:
        return (self.export.wandb and self.export.wandb.project) or self.experiment


def kind_problems(data: dict) -> list[str]:
    """What the trainer kind asks of the rest of the file. Works on the raw mapping too, so a
    file with other errors still gets these listed (pydantic skips model checks then)."""
    kind = data.get("trainer", "foldwatch")
    if kind not in ("foldwatch", "nnunetv2", "command"):
        return []
    out = []
    configurations = data.get("configurations")
    for name in configurations if isinstance(configurations, dict) else ():
        if kind != "command" and name not in CONFIGURATION_NAMES:
            out.append(f"configurations: unknown configuration {name!r}; expected one of "
                       + ", ".join(CONFIGURATION_NAMES))
        if kind == "command" and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", str(name)):
            out.append(f"configurations: {name!r} is not a usable run name (letters, digits, "
                       "_ . -)")
    need = {"nnunetv2": "nnunet", "command": "command"}.get(kind)
    if need and data.get(need) is None:
        out.append(f"trainer: {kind} needs a `{need}:` section (see configs/examples/)")
    for section in ("nnunet", "command"):
        if data.get(section) is not None and need != section:
            out.append(f"`{section}:` is set but trainer is {kind!r}; set trainer: "
                       f"{'nnunetv2' if section == 'nnunet' else 'command'} or remove the section")
    if kind == "foldwatch" and data.get("dataset") is None:
        out.append("dataset: required field is missing (the nnU-Net raw folder or a datalist "
                   ".json)")
    if (kind == "nnunetv2" and isinstance(configurations, dict)
            and "3d_cascade_fullres" in configurations and "3d_lowres" not in configurations):
        out.append("configurations: 3d_cascade_fullres needs 3d_lowres too (it trains on the "
                   "3d_lowres folds' predictions)")
    return out


def field_path(loc) -> str:
    """pydantic's location as written in the file's terms: notify.urls[2]."""
    out = ""
    for p in loc:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _describe(err: dict) -> str:
    loc = field_path(err["loc"]) or "(top level)"
    kind = err["type"]
    given = err.get("input")
    if kind == "notify_url":
        return f"{loc}: {err['msg']}"          # the message shows the URL, masked
    if kind == "extra_forbidden":
        return f"{loc}: unknown key (check the spelling; see configs/example.yaml)"
    if kind == "missing":
        return f"{loc}: required field is missing"
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if isinstance(given, dict):
        # a whole-section check: its message names the field itself
        return f"{loc}: {msg}" if err["loc"] else msg
    return f"{loc}: {msg} (got {given!r})"


def parse_experiment(data: object, source: Path | None = None) -> Experiment:
    """Validate already-loaded YAML data; ConfigError lists every problem."""
    where = str(source) if source else "<experiment>"
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of keys (experiment:, dataset:, ...), "
                          f"got {type(data).__name__}")
    try:
        exp = Experiment.model_validate(data)
    except ValidationError as e:
        lines = [f"  {_describe(err)}" for err in e.errors()]
        text = "\n".join(lines)
        lines += [f"  {p}" for p in kind_problems(data) if p not in text]
        raise ConfigError(f"{where}: invalid experiment file:\n" + "\n".join(lines)) from None
    return exp.model_copy(update={"source": source.resolve() if source else None})


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key written twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:       # an unhashable key: the base class reports it
                break
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice (first at line {first.line + 1}); "
                    "keep one of them", key_node.start_mark)
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def load_experiment(path: str | Path) -> Experiment:
    """Read and validate an experiment YAML file; ConfigError (exit 2) for any problem."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: experiment file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder; pass the experiment YAML file inside it") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read experiment file: {e.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a text file (byte {e.start} is not UTF-8); pass the "
                          "experiment YAML file (see configs/example.yaml)") from None
    if "\x00" in text:
        raise ConfigError(f"{path}: not a text file (it contains NUL bytes); pass the "
                          "experiment YAML file (see configs/example.yaml)")
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"{path}: not valid YAML{at}: {problem}") from None
    return parse_experiment(data, path)


def dump_experiment(exp: Experiment) -> str:
    """YAML text of an experiment (for generated files such as the demo's)."""
    data = exp.model_dump(mode="json", exclude_defaults=False)
    return yaml.safe_dump(data, sort_keys=False)


def run_name(configuration: str, fold: int) -> str:
    """How a fold is named on screen and on the command line: '3d_fullres/0'."""
    return f"{configuration}/{fold}"
