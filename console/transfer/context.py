"""What a fold was trained against, as archive members: the plan, the splits and the dataset
fingerprint of an experiment on this machine, and their digests (contracts.digests).

`foldwatch pack` puts these members into the archive; `foldwatch import` builds the same
members from its own experiment and compares the digests, and, when they differ, the contents
(console.transfer.differences), so it can say what differs in people's terms.
"""

from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass
from pathlib import Path

from contracts import digests as d
from contracts.errors import ConfigError
from contracts.experiment import Experiment

PLANS = "context/plans/{}.json"                    # foldwatch
SPLITS = "context/splits.json"
FINGERPRINT = "context/fingerprint.json"
COMMAND = "context/command.json"                   # command
NN_PLANS = "context/nnunet/plans.json"             # nnunetv2: the model folder's files
NN_DATASET = "context/nnunet/dataset.json"
NN_FINGERPRINT = "context/nnunet/dataset_fingerprint.json"
NN_SPLITS = "context/nnunet/splits_final.json"
NN_MODEL_FILES = {NN_PLANS: "plans.json", NN_DATASET: "dataset.json",
                  NN_FINGERPRINT: "dataset_fingerprint.json"}
ROOTS = {"raw": "nnUNet_raw", "preprocessed": "nnUNet_preprocessed", "results": "nnUNet_results"}


@dataclass
class NnunetPlaces:
    """Where nnU-Net keeps an experiment's files on this machine."""
    dataset: str                       # Dataset901_Tiny
    trainer: str                       # the class name (nnunet.trainer without its module)
    plans: str
    preprocessed: Path                 # nnUNet_preprocessed/<dataset>
    results: Path                      # nnUNet_results/<dataset>

    def model_dir(self, configuration: str) -> Path:
        return self.results / f"{self.trainer}__{self.plans}__{configuration}"

    def fold_dir(self, configuration: str, fold: int) -> Path:
        return self.model_dir(configuration) / f"fold_{fold}"

    def info(self) -> dict:
        return {"dataset": self.dataset, "trainer": self.trainer, "plans": self.plans}


def nnunet_places(exp: Experiment) -> NnunetPlaces:
    """The experiment's nnU-Net folders; ConfigError when they are not set or not planned."""
    s = exp.nnunet
    roots = {}
    for key, env in ROOTS.items():
        value = getattr(s, key) or os.environ.get(env)
        if not value:
            raise ConfigError(f"{exp.source}: nnU-Net's folders are not set: nnunet.{key} (or "
                              f"${env}). Set them in the nnunet: section or export the "
                              "environment variables")
        roots[key] = exp.resolve(Path(value))
    pattern = s.dataset if isinstance(s.dataset, str) else f"Dataset{s.dataset:03d}_*"
    found = sorted(glob.glob(str(roots["preprocessed"] / pattern)))
    if not found:
        raise ConfigError(f"{exp.source}: nnU-Net dataset {s.dataset} is not planned here "
                          f"(nothing matches {roots['preprocessed'] / pattern}): run the "
                          "experiment's plan stage first (`foldwatch up` plans before "
                          "training), or nnUNetv2_plan_and_preprocess")
    name = Path(found[0]).name
    return NnunetPlaces(dataset=name, trainer=s.trainer.rpartition(".")[2], plans=s.plans,
                        preprocessed=roots["preprocessed"] / name, results=roots["results"] / name)


def _read(path: Path, what: str, fix: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no {what} here; {fix}") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the {what} ({e.strerror or e})") from None


def local_context(exp: Experiment, configurations: list[str], *,
                  model_files: bool = False) -> dict[str, bytes]:
    """This machine's context members for `configurations`. `model_files` (pack, nnunetv2):
    the plans, dataset and fingerprint the folds were trained with (the model folder's copy),
    instead of the preprocessed folder's that new folds would train with (import)."""
    plan_first = ("run the experiment's plan stage first (`foldwatch up EXP` plans and "
                  "preprocesses before it trains), then try again")
    if exp.trainer == "foldwatch":
        lay = exp.layout
        out = {PLANS.format(c): _read(lay.plan(c), f"plan for {c}", plan_first)
               for c in configurations}
        out[SPLITS] = _read(lay.splits, "splits", plan_first)
        out[FINGERPRINT] = _read(lay.fingerprint, "dataset fingerprint", plan_first)
        return out
    if exp.trainer == "command":
        return {COMMAND: json.dumps(exp.command.model_dump(mode="json"), indent=1).encode()}
    places = nnunet_places(exp)
    source = {NN_PLANS: places.preprocessed / f"{places.plans}.json",
              NN_DATASET: places.preprocessed / "dataset.json",
              NN_FINGERPRINT: places.preprocessed / "dataset_fingerprint.json"}
    if model_files:
        for c in configurations:
            model = places.model_dir(c)
            if (model / "plans.json").exists():
                source = {name: model / file for name, file in NN_MODEL_FILES.items()}
                break
    out = {name: _read(path, name.rpartition("/")[2], plan_first) for name, path in source.items()}
    splits = places.preprocessed / "splits_final.json"
    if splits.exists():
        out[NN_SPLITS] = _read(splits, "splits", plan_first)
    return out


def parse(context: dict[str, bytes], where: str) -> dict[str, object]:
    """The context members as JSON values; ConfigError naming a member that is not JSON."""
    out = {}
    for name, data in context.items():
        try:
            out[name] = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise ConfigError(f"{where}: {name} is not valid JSON ({e})") from None
    return out


def digests(trainer: str, ctx: dict[str, object], configurations: list[str],
            where: str) -> dict:
    """{"plan": {cfg: digest}, "splits": digest or None, "fingerprint": digest or None}."""
    try:
        if trainer == "foldwatch":
            return {"plan": {c: d.digest(d.foldwatch_plan_subject(ctx[PLANS.format(c)]))
                             for c in configurations},
                    "splits": d.digest(d.splits_subject(ctx[SPLITS])),
                    "fingerprint": d.digest(d.foldwatch_fingerprint_subject(ctx[FINGERPRINT]))}
        if trainer == "command":
            plan = d.digest(d.command_plan_subject(ctx[COMMAND]))
            return {"plan": {c: plan for c in configurations}, "splits": None,
                    "fingerprint": None}
        return {"plan": {c: d.digest(d.nnunet_plan_subject(ctx[NN_PLANS], c, ctx[NN_DATASET]))
                         for c in configurations},
                "splits": d.digest(d.splits_subject(ctx[NN_SPLITS])) if NN_SPLITS in ctx
                else None,
                "fingerprint": d.digest(d.nnunet_fingerprint_subject(ctx[NN_FINGERPRINT]))}
    except KeyError as e:
        raise ConfigError(f"{where}: {e.args[0]} is missing") from None
    except (ValueError, TypeError, AttributeError) as e:
        raise ConfigError(f"{where}: the plan, splits or fingerprint cannot be read ({e})") from None
