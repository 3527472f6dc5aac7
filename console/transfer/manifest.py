"""The manifest of a fold archive (`foldwatch pack`), its first member (docs/transfer.md).

An archive is one uncompressed tar file whose members are, in this order:

    foldwatch-manifest.json          this manifest (UTF-8 JSON)
    foldwatch-manifest.json.sha256   the hex SHA-256 of the manifest's bytes
    context/...                      what the digests are computed from (plan, splits, fingerprint)
    runs/<cfg>/fold_<k>/...          each fold's foldwatch run folder
    nnunet/<cfg>/fold_<k>/...        trainer: nnunetv2: nnU-Net's own fold folder

Every member after the first two is listed in `files` with its size and SHA-256, so one flipped
byte anywhere in the payload, a member too many or one missing is found before anything is
placed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from contracts.errors import ConfigError

FORMAT = "foldwatch-folds"
VERSION = 1
MANIFEST = "foldwatch-manifest.json"
MANIFEST_SHA = MANIFEST + ".sha256"
CONTEXT = "context/"
RUNS = "runs/"
NNUNET = "nnunet/"


def run_prefix(configuration: str, fold: int) -> str:
    return f"{RUNS}{configuration}/fold_{fold}/"


def nnunet_prefix(configuration: str, fold: int) -> str:
    return f"{NNUNET}{configuration}/fold_{fold}/"


@dataclass
class FileEntry:
    name: str
    size: int
    sha256: str


@dataclass
class RunEntry:
    key: str                           # "2d/3"
    configuration: str
    fold: int
    trained_on: str | None = None      # host of the fold's last training attempt
    completed: float | None = None     # when its training ended (its `end` event)
    epochs: int | None = None          # epochs trained
    validation_dice: float | None = None   # its final validation's foreground Dice
    hyperparameters: dict | None = None    # foldwatch: the configuration it trained with
    nnunet: bool = False               # nnU-Net's fold folder is in nnunet/<cfg>/fold_<k>/


@dataclass
class Manifest:
    experiment: str
    trainer: str                       # foldwatch, nnunetv2, command
    created: float
    host: str
    user: str | None
    foldwatch: str                     # the packing foldwatch's version
    results: str                       # results/<exp> on the packing machine (for people)
    digests: dict                      # {"plan": {cfg: digest}, "splits": d|None, "fingerprint": d|None}
    runs: list[RunEntry]
    files: list[FileEntry] = field(default_factory=list)
    nnunet: dict | None = None         # {"dataset": "Dataset901_X", "trainer": ..., "plans": ...}
    all_checkpoints: bool = False
    format: str = FORMAT
    version: int = VERSION

    @property
    def keys(self) -> list[str]:
        return [r.key for r in self.runs]

    def to_bytes(self) -> bytes:
        return (json.dumps(asdict(self), indent=1, ensure_ascii=False, allow_nan=False)
                + "\n").encode()

    @staticmethod
    def sha(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    @classmethod
    def parse(cls, data: bytes, where: str) -> "Manifest":
        """The manifest read from an archive; ConfigError naming the archive and the field."""
        try:
            raw = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise ConfigError(f"{where}: its manifest is not valid JSON ({e}); the archive is "
                              "damaged: copy it again from the machine that packed it") from None
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            raise ConfigError(f"{where}: not a foldwatch fold archive (its manifest says format "
                              f"{raw.get('format') if isinstance(raw, dict) else None!r})")
        if raw.get("version") != VERSION:
            raise ConfigError(f"{where}: archive format version {raw.get('version')!r}; this "
                              f"foldwatch reads version {VERSION}. Import it with the foldwatch "
                              "version that packed it, or pack it again with this one")
        try:
            runs = [RunEntry(**r) for r in raw.pop("runs")]
            files = [FileEntry(**f) for f in raw.pop("files")]
            m = cls(runs=runs, files=files, **raw)
        except (KeyError, TypeError) as e:
            raise ConfigError(f"{where}: its manifest lacks or misnames a field ({e}); the "
                              "archive is damaged or was not written by `foldwatch pack`") from None
        for f in m.files:
            check_member_name(f.name, where)
        return m


def check_member_name(name: str, where: str) -> None:
    """Member names are relative paths under the archive's own folders: never absolute,
    never `..`, so nothing can be written outside the staging folder."""
    parts = name.split("/")
    if (not name or name.startswith("/") or "\\" in name or any(p in ("", ".", "..")
                                                                 for p in parts)
            or not name.startswith((CONTEXT, RUNS, NNUNET))):
        raise ConfigError(f"{where}: member {name!r} is not a file foldwatch packs (absolute, "
                          "'..', or outside context/, runs/, nnunet/); refusing the archive")
