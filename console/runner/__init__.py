"""`python -m console.runner`: runs a program that writes no metrics.jsonl itself (nnU-Net, any
command) and writes it for it, from its log or stdout.
"""
