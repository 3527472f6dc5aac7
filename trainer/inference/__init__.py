"""Whole-volume prediction: sliding window, fold/configuration ensembles, validation and test-set prediction."""
