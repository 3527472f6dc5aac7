"""foldwatch's trainer: datasets, planning, preprocessing, training, inference, evaluation.

Entry point: `python -m trainer <command>`. This file stays free of heavy imports so that
`python -m trainer --help` is quick; torch is imported by the commands that need it.
"""
