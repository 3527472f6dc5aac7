"""Reads W&B offline run files (.wandb) with the wandb package's own protobuf records.

The file is a LevelDB-style log (wandb's transaction log): a 7-byte ':W&B' header, then
32 KiB blocks of chunks with a 7-byte header (crc32, length, type FULL/FIRST/MIDDLE/LAST).
"""

from __future__ import annotations

import struct
from pathlib import Path

BLOCK = 32768


def _chunks(data: bytes):
    pos, buf = 7, b""
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:                 # block trailer padding
            pos += left
            continue
        _, n, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and n == 0:
            pos += left
            continue
        chunk, pos = data[pos + 7:pos + 7 + n], pos + 7 + n
        if kind == 1:
            yield chunk
        elif kind == 2:
            buf = chunk
        elif kind == 3:
            buf += chunk
        elif kind == 4:
            yield buf + chunk
            buf = b""


def records(path: Path):
    from wandb.proto import wandb_internal_pb2 as pb
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path}: not a W&B transaction log"
    for raw in _chunks(data):
        rec = pb.Record()
        rec.ParseFromString(raw)
        yield rec


def leet_records(path: Path) -> list[dict]:
    """The records of an offline run as `wandb leet inspect --json` prints them (W&B's own
    Go reader, the command docs/pictures.md tells users to look at offline runs with)."""
    import json
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
