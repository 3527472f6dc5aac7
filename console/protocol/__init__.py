"""The client protocol: what a supervisor shows its clients (the snapshot model and the column
vocabulary) and how they talk (docs/console-engine.md). Imports nothing of the engine.
"""
