"""Tailer edge cases and bounded run memory."""

from __future__ import annotations

import json
import os

from console.engine.runmetrics import MAX_POINTS, RunMetrics
from console.store.tailer import Tailer


def line(**kw) -> bytes:
    return (json.dumps({"t": 1.0, **kw}) + "\n").encode()


def test_reads_only_appended_lines_and_buffers_partial(tmp_path):
    p = tmp_path / "metrics.jsonl"
    t = Tailer(p)
    assert t.read() == []                                 # missing file is fine
    p.write_bytes(line(event="start", n=1) + b'{"t": 2, "event": "ep')
    assert [e["n"] for e in t.read()] == [1]
    with open(p, "ab") as f:
        f.write(b'och", "epoch": 0}\n')
    assert t.read() == [{"t": 2, "event": "epoch", "epoch": 0}]
    assert t.read() == []
    assert t.garbage == 0


def test_garbage_lines_are_counted_and_skipped(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_bytes(line(event="a") + b"not json\n" + b"[1, 2]\n" + b"\xff\xfe\n" + line(event="b"))
    t = Tailer(p)
    assert [e["event"] for e in t.read()] == ["a", "b"]
    assert t.garbage == 3


def test_truncation_and_replacement_start_over(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_bytes(line(event="a") + line(event="b"))
    t = Tailer(p)
    assert len(t.read()) == 2
    p.write_bytes(line(event="c"))                        # truncated in place (same inode)
    assert [e["event"] for e in t.read()] == ["c"] and t.resets == 1
    new = tmp_path / "new.jsonl"
    new.write_bytes(line(event="d") + line(event="e") + line(event="f"))
    os.replace(new, p)                                     # replaced by a longer file
    assert [e["event"] for e in t.read()] == ["d", "e", "f"] and t.resets == 2
    p.unlink()
    assert t.read() == []
    p.write_bytes(line(event="g"))
    assert [e["event"] for e in t.read()] == ["g"]


def test_collapsed_iter_lines_keep_order_and_latest(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_bytes(b"".join([line(event="iter", iter=i) for i in range(5)] + [line(event="epoch")]
                           + [line(event="iter", iter=9)]))
    evs = Tailer(p, collapse_iter=True).read()
    assert [(e["event"], e.get("iter")) for e in evs] == [("iter", 4), ("epoch", None), ("iter", 9)]


def test_run_metrics_history_is_bounded():
    m = RunMetrics()
    m.feed({"t": 0, "event": "start", "epochs": 100000, "iterations_per_epoch": 5,
            "resumed_from": None})
    for e in range(20000):
        m.feed({"t": e, "event": "epoch", "epoch": e, "train_loss": 1.0, "val_loss": 1.0,
                "val_dice": e / 20000, "ema_dice": e / 20000, "lr": 0.01, "epoch_s": 2.0})
    assert len(m.history) <= MAX_POINTS
    assert m.history[0].epoch == 0 and m.history[-1].epoch > 19000
    assert m.epoch == 20000 and m.best_dice == 19999 / 20000
    assert m.eta_s() == (100000 - 20000) * 2.0


def test_lines_across_chunk_boundaries(tmp_path, monkeypatch):
    import console.store.tailer as tailer_mod
    monkeypatch.setattr(tailer_mod, "CHUNK", 7)            # every line spans several reads
    p = tmp_path / "m.jsonl"
    p.write_bytes(b"".join(line(event="x", i=i) for i in range(50)))
    got = []
    Tailer(p).read_each(got.append)
    assert [e["i"] for e in got] == list(range(50))
