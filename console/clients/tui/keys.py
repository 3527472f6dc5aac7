"""The console's keys: one table for the bindings, the help screen, the palette and the docs."""

from __future__ import annotations

KEYS = [  # key, action, footer label, what it does
    ("l", "launch", "Launch", "Launch: configurations x folds x GPUs (shows what runs already)"),
    ("s", "stop", "Stop", "Stop the selected run (graceful, asks first; stays stopped)"),
    ("K", "kill", "Kill", "Kill the selected run (SIGKILL, asks first)"),
    ("r", "resume", "Resume", "Resume the selected stopped or failed run"),
    ("x", "scratch", "Scratch", "Restart the selected run from scratch (asks first)"),
    ("w", "watchdog", "Watchdog", "Toggle the watchdog"),
    ("e", "crossval", "Evaluate", "Run cross-validation as soon as its folds are complete"),
    ("b", "find_best", "Best", "Find the best configuration / ensemble as soon as possible"),
    ("p", "predict", "Predict", "Predict the test images as soon as possible"),
    ("enter", "detail", "Detail", "Run detail: curves, per-class Dice, checkpoints, decisions"),
    ("t", "logs", "Logs", "Log viewer of the selected run or stage (stdout, stderr)"),
    ("v", "results", "Results", "Results: cross-validation, ensembles, chosen model, test set"),
    ("g", "gpus", "GPUs", "GPU detail: processes, users, longer history"),
    ("o", "sort", "Sort", "Sort the runs table (order, state, best EMA, ETA)"),
    ("slash", "filter", "Filter", "Filter runs (Esc clears)"),
    ("n", "notices", "Notices", "Notification history"),
    ("a", "bell", "Bell", "Terminal bell on failure on/off"),
    ("f1,question_mark", "help", "Help", "This help"),
    ("q", "quit", "Quit", "Close this window; supervision and the runs go on"),
    ("Q", "quit_stop_all", "Quit+stop", "Quit and stop all runs (asks first)"),
]
SHOW_IN_FOOTER = {"launch", "stop", "resume", "logs", "results", "help", "quit"}
KEY_NAMES = {"slash": "/", "enter": "Enter", "f1,question_mark": "F1 ?", "escape": "Esc"}

# Actions that change something: refused in a read-only view (--read-only).
CHANGING = frozenset({"launch", "stop", "kill", "resume", "scratch", "watchdog", "crossval",
                      "find_best", "predict", "quit_stop_all"})
# Actions about the selected row.
ON_ROW = frozenset({"stop", "kill", "resume", "scratch", "detail", "logs"})


def key_table() -> str:
    rows = [(KEY_NAMES.get(k, k), d) for k, _, _, d in KEYS]
    rows += [("j k", "Down / up in the runs table (arrows too)"),
             ("Esc q", "Close a screen or dialog (back to the runs)"),
             ("ctrl+p", "Command palette (every action allowed now, by name)")]
    return "\n".join(f"{k:>7}  {d}" for k, d in rows)
