"""What the console and the trainer agree on: the experiment file, the results layout,
the event log format, atomic writes and exit codes.

Nothing in this package may import torch, monai, nibabel or numpy: the console imports it.
"""
