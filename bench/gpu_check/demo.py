"""The demo step: `foldwatch demo DIR --headless` as a user runs it, its wall time and Dice
(cross-validation, find-best's choice, the test set) beside the README's CPU figures."""

from __future__ import annotations

import re
import shutil
import time

from .context import ROOT, Ctx, fw, tail, write_yaml
from .report import Step
from .session import Supervised

DEMO_ROWS = {   # the README's demo table: row label -> what this step reads from status --json
    "2d, 5-fold cross-validation": "2d",
    "3d_fullres, 5-fold cross-validation": "3d_fullres",
    "ensemble 2d + 3d_fullres (chosen by find-best)": "chosen",
    "test set, 6 cases (ensemble + largest-component postprocessing)": "test",
}


def readme_demo_figures() -> tuple[dict[str, list[float]], str | None]:
    """The README's CPU demo table (row -> organ, lesion, foreground mean) and its wall time."""
    text = (ROOT / "README.md").read_text()
    rows = {}
    for label in DEMO_ROWS:
        m = re.search(r"^\| " + re.escape(label) + r" \|(.*)$", text, re.M)
        if m:
            rows[label] = [float(v) for v in re.findall(r"\d\.\d+", m.group(1))[:3]]
    wall = re.search(r"prediction\) took ([^(]+?) \(", text)
    return rows, wall.group(1).strip() if wall else None


DRY_CONFIGURATION = "3d_fullres"


def dry_demo(ctx: Ctx, folder) -> None:
    """`foldwatch demo` keeps an existing dataset and demo.yaml: the dry run's dataset and a
    demo.yaml of one fold of one configuration for one epoch, so that the whole pipeline
    (plan, preprocessing, the fold, cross-validation, find-best, postprocessing, the test
    set) runs in seconds; each trainer process more is seconds of imports."""
    import yaml
    (folder / "Dataset900_Demo").symlink_to(ctx.data, target_is_directory=True)
    d = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    c = d["configurations"][DRY_CONFIGURATION]
    c.update(epochs=1, iterations_per_epoch=2, val_iterations=1, base_features=4, max_features=8)
    d.update(dataset="Dataset900_Demo", results="results", folds=[0],
             configurations={DRY_CONFIGURATION: c})
    write_yaml(folder / "demo.yaml", d)


def step_demo(ctx: Ctx) -> None:
    s = Step("demo", ctx.folder)
    folder = ctx.work / "demo"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    if not ctx.gpu:
        dry_demo(ctx, folder)
    log = ctx.folder / "demo.log"
    with Supervised(ctx, folder / "demo.yaml", log, argv=fw("demo", folder, "--headless")) as demo:
        t = time.monotonic()
        demo.start()
        while demo.proc.poll() is None and ctx.left() > 20:
            time.sleep(0.2)
        wall = time.monotonic() - t
        if demo.running():          # out of time: say how far it got (end() stops it)
            st = demo.status()
            done = [r["key"] for r in st["runs"] if r["state"] == "completed"]
            s.figure("runs completed when the time ran out", len(done),
                     f"of {len(st['runs'])} runs", f"foldwatch status --json after {wall:.0f} s")
            s.finish("failed", f"did not finish within its {wall:.0f} s; run it alone: "
                     "--steps demo")
            return
        code = demo.proc.returncode
        s.figure("wall time", round(wall, 1), "s", "foldwatch demo DIR --headless, whole "
                 "command: data generation, plan, preprocessing, 10 folds, cross-validation, "
                 "find-best, test prediction" if ctx.gpu else "foldwatch demo --headless with a "
                 f"demo.yaml of one {DRY_CONFIGURATION} fold for one epoch, on the dry run's "
                 "dataset")
        if not s.check("foldwatch demo --headless exit 0", code == 0,
                       "" if code == 0 else tail(log.read_text(errors="replace"))):
            s.finish()
            return
        results(s, demo.status().get("results") or {})
    if not ctx.gpu:
        s.note(f"Dry run ({ctx.skip_why}): the demo ran on the CPU with one {DRY_CONFIGURATION} "
               "fold for one epoch on 10 cases (2 test cases); its Dice is not comparable with "
               "the README's.")
    s.finish()


def results(s: Step, res: dict) -> None:
    """The demo's Dice, row by row of the README's table, its CPU figures beside them."""
    ours = {sv["name"]: sv for sv in res.get("configurations") or []}
    if res.get("test"):
        ours["test"] = res["test"]
    readme, readme_wall = readme_demo_figures()
    for label, key in DEMO_ROWS.items():
        if key == "chosen":
            value = res.get("chosen_dice")
            how = f"find-best's choice {'+'.join(res.get('chosen') or [])}: best_configuration.json"
        else:
            sv = ours.get(key) or {}
            value = sv.get("foreground_dice")
            per = ", ".join(f"{k} {v:.3f}" for k, v in (sv.get("per_class") or {}).items()
                            if v is not None)
            how = f"{sv.get('path', '-')} foreground mean ({per})"
        s.figure(label, value if value is not None else "n/a", "Dice",
                 "foldwatch status --json results: " + how)
        if label in readme:
            s.fact(f"README (CPU, 2 cores): {label}", " / ".join(f"{v:.3f}" for v in readme[label])
                   + " (organ / lesion / foreground mean)", "README.md, The demo")
    if readme_wall:
        s.fact("README (CPU, 2 cores): wall time", readme_wall, "README.md, The demo")
