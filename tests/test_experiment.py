"""The experiment file: the shipped examples load; every mistake names file, field, expectation."""

from pathlib import Path

import pytest

from contracts.errors import ConfigError
from contracts.experiment import load_experiment

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["demo.yaml", "example.yaml"])
def test_shipped_files_load(name):
    exp = load_experiment(REPO / "configs" / name)
    assert exp.configurations
    assert exp.layout.root.name == exp.experiment


def test_paths_are_relative_to_the_file(tmp_path):
    f = tmp_path / "sub" / "e.yaml"
    f.parent.mkdir()
    f.write_text("experiment: x\ndataset: data/D\nconfigurations: {2d: {}}\n")
    exp = load_experiment(f)
    assert exp.dataset_path == (f.parent / "data/D").resolve()
    assert exp.layout.root == (f.parent / "results" / "x").resolve()


def _error(tmp_path, text):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_experiment(f)
    return str(e.value)


def test_unknown_key_is_an_error_with_its_path(tmp_path):
    msg = _error(tmp_path, "experiment: x\ndataset: d\nconfigurations:\n  2d: {bach_size: 2}\n")
    assert "bad.yaml" in msg and "configurations.2d.bach_size" in msg and "unknown key" in msg


def test_wrong_type_names_field_and_value(tmp_path):
    msg = _error(tmp_path, "experiment: x\ndataset: d\nconfigurations:\n  2d: {batch_size: two}\n")
    assert "configurations.2d.batch_size" in msg and "'two'" in msg


def test_all_problems_are_listed(tmp_path):
    msg = _error(tmp_path, "experiment: x\nconfigurations: {4d: {}}\nwatchdog: {max_restarts: -1}\n")
    assert "dataset: required" in msg
    assert "unknown configuration '4d'" in msg
    assert "watchdog.max_restarts" in msg


def test_dimension_mismatch(tmp_path):
    msg = _error(tmp_path, "experiment: x\ndataset: d\nconfigurations: {2d: {patch_size: [8, 8, 8]}}\n")
    assert "2d needs 2 numbers" in msg


def test_yaml_syntax_error_has_line(tmp_path):
    msg = _error(tmp_path, "experiment: x\ndataset: [d\n")
    assert "not valid YAML" in msg and "line" in msg


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_experiment(tmp_path / "nope.yaml")


def test_num_workers_is_auto_by_default_or_a_count(tmp_path):
    f = tmp_path / "e.yaml"
    f.write_text("experiment: x\ndataset: d\nconfigurations: {2d: {}, 3d_fullres: {num_workers: 3}}\n")
    exp = load_experiment(f)
    assert exp.configurations["2d"].num_workers == "auto"
    assert exp.configurations["3d_fullres"].num_workers == 3
    msg = _error(tmp_path, "experiment: x\ndataset: d\nconfigurations: {2d: {num_workers: many}}\n")
    assert "configurations.2d.num_workers" in msg and "'many'" in msg
