"""`foldwatch pack` and `foldwatch import`: moving completed folds between machines that share
no disk (docs/transfer.md). Torch-free: checkpoints are only bytes here."""

from __future__ import annotations

from pathlib import Path

from contracts.experiment import load_experiment


def _runs(text: str | None) -> list[str] | None:
    return [r.strip() for r in text.split(",") if r.strip()] if text else None


def pack(exp_path: Path, runs: str | None, out: Path | None, all_checkpoints: bool) -> int:
    from console.store.disk import mb
    from console.transfer.pack import pack as do_pack
    exp = load_experiment(exp_path)
    done = do_pack(exp, _runs(runs) or [], out, all_checkpoints)
    print(f"packed {', '.join(done.keys)} ({done.files} files, {mb(done.size)}) -> {done.path}")
    print("Copy it to the machine that gathers the folds (scp, rsync, a USB stick, cloud "
          f"storage) and run there:\n  foldwatch import {exp_path} {done.path.name}")
    return 0


def import_(exp_path: Path, files: list[Path], replace: bool, runs: str | None) -> int:
    from contracts.origin import origin_label
    from console.transfer.importing import import_files
    exp = load_experiment(exp_path)

    def show(r) -> None:
        if r.already:
            print(f"{r.source}: {', '.join(r.keys)} imported from it already (same manifest); "
                  "nothing to do (--replace imports it again)")
            return
        origin = None
        if r.keys:
            from contracts.origin import read_origin
            cfg, _, k = r.keys[0].rpartition("/")
            origin = origin_label(read_origin(exp.layout.fold_dir(cfg, int(k))))
        print(f"imported {', '.join(r.keys)} from {r.source}"
              + (f" (trained on {origin})" if origin else ""))
        for line in r.aside:
            print(f"  the folder that was there is kept as {line}")
        for note in r.notes:
            print(f"  note: {note}")

    import_files(exp, files, replace=replace, runs=_runs(runs), on_result=show)
    return 0
