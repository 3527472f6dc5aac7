"""Bridges from the metric log to TensorBoard and W&B (offline by default), run as a subprocess.

`python -m console.bridges.exporters EXPERIMENT` follows every fold's metrics.jsonl and previews
folder and feeds the sinks the experiment's `export:` section switches on. tensorboardX
and wandb are imported inside the sinks only, never by the console process itself.
"""
