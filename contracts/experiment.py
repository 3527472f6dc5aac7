"""The experiment file (ARCHITECTURE.md section 1): schema, loading and error messages.

One module for both sides. It imports pydantic and yaml only, never torch, so the console
can validate a file on a login node. Unknown keys are errors; every error names the file,
the field path and what was expected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Union

import yaml
from pydantic import (BaseModel, ConfigDict, Field, ValidationError, field_validator,
                      model_validator)

from .errors import ConfigError
from .layout import Layout

CONFIGURATION_NAMES = ("2d", "3d_fullres", "3d_lowres", "3d_cascade_fullres")
# nnU-Net's network presets: the plain U-Net and the residual-encoder U-Nets M/L/XL
PRESETS = ("unet", "resenc_m", "resenc_l", "resenc_xl")
CASCADE, LOWRES = "3d_cascade_fullres", "3d_lowres"

PositiveInt = Annotated[int, Field(gt=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Configuration(_Strict):
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
    num_workers: Annotated[int, Field(ge=0)] = 2
    seed: int = 12345
    tta_mirroring: bool = True
    sliding_window_overlap: Annotated[float, Field(ge=0, lt=1)] = 0.5

    @field_validator("patch_size", "spacing")
    @classmethod
    def _two_or_three(cls, v):
        if isinstance(v, list) and len(v) not in (2, 3):
            raise ValueError("expected 'auto' or a list of 2 (2d) or 3 (3d) numbers")
        return v


class Devices(_Strict):
    gpus: Union[Literal["all"], list[Annotated[int, Field(ge=0)]]] = "all"
    runs_per_gpu: PositiveInt = 1
    min_free_vram_gb: Annotated[float, Field(ge=0)] = 4.0
    share_with_foreign: bool = False   # a GPU running someone else's compute process is busy
    cpu_slots: PositiveInt = 2         # used when there is no NVIDIA GPU
    cpu_threads_per_run: Union[Literal["auto"], PositiveInt] = "auto"


class Watchdog(_Strict):
    enabled: bool = True
    stall_timeout_s: Annotated[float, Field(gt=0)] = 900
    max_restarts: Annotated[int, Field(ge=0)] = 5
    backoff_initial_s: Annotated[float, Field(ge=0)] = 5
    backoff_max_s: Annotated[float, Field(ge=0)] = 300
    grace_period_s: Annotated[float, Field(ge=0)] = 30
    auto_fit_on_oom: bool = True


class Pipeline(_Strict):
    evaluate: bool = True
    find_best: bool = True
    postprocess: bool = True
    predict_test: bool = True


class Experiment(_Strict):
    experiment: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
    dataset: Path
    results: Path = Path("results")
    folds: list[Annotated[int, Field(ge=0, le=4)]] = [0, 1, 2, 3, 4]
    splits: Path | None = None          # a user-supplied splits.json (nnU-Net format)
    test_images: Path | None = None     # default: the dataset's imagesTs
    configurations: dict[str, Configuration]
    devices: Devices = Devices()
    watchdog: Watchdog = Watchdog()
    pipeline: Pipeline = Pipeline()
    backend: Literal["local"] = "local"

    # Set by load_experiment: the file it came from (paths are relative to its folder).
    source: Path | None = Field(default=None, exclude=True)

    @field_validator("configurations")
    @classmethod
    def _known_configurations(cls, v):
        if not v:
            raise ValueError("expected at least one configuration")
        for name in v:
            if name not in CONFIGURATION_NAMES:
                raise ValueError(f"unknown configuration {name!r}; expected one of "
                                 + ", ".join(CONFIGURATION_NAMES))
        return v

    @field_validator("folds")
    @classmethod
    def _unique_folds(cls, v):
        if len(set(v)) != len(v):
            raise ValueError("folds are listed twice")
        if not v:
            raise ValueError("expected at least one fold")
        return sorted(v)

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
            if self.folds != [0, 1, 2, 3, 4]:
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
        return self.resolve(self.dataset)

    @property
    def layout(self) -> Layout:
        return Layout(self.resolve(self.results) / self.experiment)


def _describe(err: dict) -> str:
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    kind = err["type"]
    given = err.get("input")
    if kind == "extra_forbidden":
        return f"{loc}: unknown key (check the spelling; see configs/example.yaml)"
    if kind == "missing":
        return f"{loc}: required field is missing"
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
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
        raise ConfigError(f"{where}: invalid experiment file:\n" + "\n".join(lines)) from None
    return exp.model_copy(update={"source": source.resolve() if source else None})


def load_experiment(path: str | Path) -> Experiment:
    """Read and validate an experiment YAML file; ConfigError (exit 2) for any problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: experiment file not found") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read experiment file: {e.strerror}") from None
    try:
        data = yaml.safe_load(text)
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
