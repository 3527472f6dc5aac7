"""`foldwatch demo DIR`: generate the demo dataset once and write DIR/demo.yaml."""

from __future__ import annotations

import re
import subprocess
from importlib import resources
from pathlib import Path

from contracts.errors import DatasetError

DATASET_NAME = "Dataset900_Demo"


def bundled_demo_yaml() -> str:
    """console/data/demo.yaml from the installed package (configs/demo.yaml is its copy for
    readers of the repository; a test keeps the two equal)."""
    return resources.files("console").joinpath("data", "demo.yaml").read_text(encoding="utf-8")


def demo_yaml_text(template: str) -> str:
    """The bundled demo.yaml with dataset/results pointing inside the demo folder."""
    # Line edits rather than a YAML round trip keep the file's comments for the reader.
    text = re.sub(r"(?m)^dataset:.*$", f"dataset: {DATASET_NAME}", template)
    return re.sub(r"(?m)^results:.*$", "results: results", text)


def prepare_demo(directory: Path) -> Path:
    """Demo data and experiment in `directory` (made if absent); returns the experiment path."""
    from console.kinds.foldwatch import trainer_prefix
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    data = directory / DATASET_NAME
    if not (data / "dataset.json").exists():
        cmd = [*trainer_prefix(), "make-demo-data", str(data), "--seed", "0"]
        if data.is_dir() and any(data.iterdir()):
            # dataset.json is written last: an earlier generation was interrupted; the
            # same seed rewrites the same synthetic files
            cmd.append("--force")
            print(f"{data}: incomplete demo dataset (no dataset.json); generating it again",
                  flush=True)
        print(f"generating the demo dataset in {data} ...", flush=True)
        done = subprocess.run(cmd)
        if done.returncode != 0:
            raise DatasetError(f"{data}: generating the demo dataset failed "
                               f"(exit {done.returncode} from {' '.join(cmd)}); "
                               "see the messages above")
    target = directory / "demo.yaml"
    if not target.exists():        # the user's edits to an existing demo.yaml are kept
        target.write_text(demo_yaml_text(bundled_demo_yaml()))
    return target
