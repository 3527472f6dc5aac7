from contracts import exitcodes
from contracts.errors import DatasetError
from contracts.events import validate_event
from contracts.jsonio import iter_jsonl
from trainer.runtime.runlog import RunLog


def test_completed_and_failed_attempts_end_with_contract_events(tmp_path):
    with RunLog(tmp_path, stage="demo") as log:
        log.progress("demo", 1, 2)
    assert log.exit_code == exitcodes.OK
    with RunLog(tmp_path, stage="demo") as log:
        raise DatasetError(["case_001: label missing", "case_002: NaN in image"])
    assert log.exit_code == exitcodes.DATASET
    events = list(iter_jsonl(tmp_path / "metrics.jsonl"))
    assert [e["event"] for e in events] == ["start", "progress", "end", "start", "end"]
    assert all(validate_event(e) == [] for e in events)
    assert events[-1]["status"] == "failed" and "case_002" in events[-1]["error"]


def test_out_of_memory_is_transient(tmp_path):
    class OutOfMemoryError(RuntimeError):
        pass
    with RunLog(tmp_path) as log:
        raise OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    assert log.exit_code == exitcodes.TRANSIENT
