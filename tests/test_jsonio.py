import json
import math
import os
import signal
import subprocess
import sys

from contracts.events import validate_event
from contracts.jsonio import EventWriter, atomic_write_json, dumps, iter_jsonl


def test_strict_json_turns_nan_and_inf_into_null():
    text = dumps({"a": math.nan, "b": [math.inf, -math.inf, 1.5]})
    assert json.loads(text) == {"a": None, "b": [None, None, 1.5]}


def test_event_writer_lines_are_valid_and_flushed(tmp_path):
    p = tmp_path / "m.jsonl"
    w = EventWriter(p)
    w.write("progress", stage="preprocess", done=1, total=3)
    # flushed: readable before close
    events = list(iter_jsonl(p))
    assert events[0]["event"] == "progress" and validate_event(events[0]) == []
    w.close()


def test_partial_and_garbage_lines_are_skipped(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text('{"t": 1, "event": "x"}\nnot json\n{"t": 2, "event": "y"}\n{"t": 3, "ev')
    assert [e["event"] for e in iter_jsonl(p)] == ["x", "y"]


def test_atomic_write_survives_kill(tmp_path):
    """SIGKILL while rewriting a file in a loop: the file always parses."""
    target = tmp_path / "state.json"
    atomic_write_json(target, {"n": -1, "pad": "x" * 100000})
    code = (
        "import sys; from contracts.jsonio import atomic_write_json\n"
        "i = 0\n"
        "while True:\n"
        f"    atomic_write_json({str(target)!r}, {{'n': i, 'pad': 'x' * 100000}}); i += 1\n"
    )
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    for _ in range(5):
        proc = subprocess.Popen([sys.executable, "-c", code], env=env)
        try:
            proc.wait(timeout=0.3)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        data = json.loads(target.read_text())
        assert len(data["pad"]) == 100000
