"""console.clients.cli.demo.prepare_demo: data generated once through the trainer command, demo.yaml kept."""

import json
import sys

import pytest

from console.clients.cli.demo import prepare_demo
from contracts.errors import DatasetError
from contracts.experiment import load_experiment

STANDIN = """
import json, sys
from pathlib import Path
out = Path(sys.argv[2]); out.mkdir(parents=True)
(out / "dataset.json").write_text(json.dumps({"argv": sys.argv[1:]}))
log = Path(sys.argv[0]).with_name("calls.txt")
log.write_text(log.read_text() + "x" if log.exists() else "x")
"""


def test_demo_generates_once_and_keeps_the_users_yaml(tmp_path, monkeypatch):
    script = tmp_path / "standin.py"
    script.write_text(STANDIN)
    monkeypatch.setenv("FOLDWATCH_TRAINER", f"{sys.executable} {script}")
    demo = tmp_path / "demo"
    path = prepare_demo(demo)
    assert path == (demo / "demo.yaml").resolve()
    argv = json.loads((demo / "Dataset900_Demo" / "dataset.json").read_text())["argv"]
    assert argv == ["make-demo-data", str((demo / "Dataset900_Demo").resolve()), "--seed", "0"]
    exp = load_experiment(path)
    assert exp.dataset_path == (demo / "Dataset900_Demo").resolve()
    assert exp.layout.root.is_relative_to(demo.resolve())
    assert "# The bundled demo" in path.read_text()          # comments survive
    edited = path.read_text() + "# my edit\n"                # the user's own change
    path.write_text(edited)
    assert prepare_demo(demo) == path
    assert path.read_text() == edited
    assert (tmp_path / "calls.txt").read_text() == "x"       # generated once


def test_demo_generation_failure_is_a_dataset_error(tmp_path, monkeypatch):
    monkeypatch.setenv("FOLDWATCH_TRAINER", f"{sys.executable} -c 'import sys; sys.exit(4)'")
    with pytest.raises(DatasetError, match="exit 4"):
        prepare_demo(tmp_path / "d")
    assert not (tmp_path / "d" / "demo.yaml").exists()


def test_interrupted_generation_is_redone_with_force(tmp_path, monkeypatch):
    script = tmp_path / "standin.py"
    script.write_text(STANDIN.replace("out.mkdir(parents=True)", "out.mkdir(parents=True, exist_ok=True)"))
    monkeypatch.setenv("FOLDWATCH_TRAINER", f"{sys.executable} {script}")
    half = tmp_path / "demo" / "Dataset900_Demo" / "imagesTr"
    half.mkdir(parents=True)
    prepare_demo(tmp_path / "demo")
    argv = json.loads((half.parent / "dataset.json").read_text())["argv"]
    assert argv[-1] == "--force"


def test_demo_yaml_is_package_data_equal_to_the_documented_copy(tmp_path):
    """`foldwatch demo` from a non-editable install: the wheel carries console/data/demo.yaml
    (read with importlib.resources), byte-equal to configs/demo.yaml."""
    import shutil
    import subprocess
    import zipfile
    from pathlib import Path

    from console.clients.cli.demo import bundled_demo_yaml
    root = Path(__file__).resolve().parents[1]
    documented = (root / "configs" / "demo.yaml").read_text(encoding="utf-8")
    assert bundled_demo_yaml() == documented
    src = tmp_path / "src"                     # build from a copy: the checkout stays clean
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("console", "contracts", "trainer", "foldwatch"):
        shutil.copytree(root / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, src / name)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                            "--no-build-isolation", "-q", "-w", str(tmp_path), str(src)],
                           capture_output=True, text=True, timeout=300, cwd=tmp_path)
    if built.returncode != 0 and "No module named" in built.stderr:
        pytest.skip(f"cannot build a wheel here: {built.stderr.strip()[-200:]}")
    assert built.returncode == 0, built.stderr
    wheel = next(tmp_path.glob("foldwatch-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        assert z.read("console/data/demo.yaml").decode("utf-8") == documented
        assert "foldwatch/__init__.py" in z.namelist()     # the helper scripts import
