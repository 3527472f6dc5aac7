"""Metrics with nnU-Net's definitions, folder comparison, cross-validation summaries, find-best, postprocessing."""
