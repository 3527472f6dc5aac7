"""Completed folds between machines that share no disk: `foldwatch pack` writes them into one
checked archive, `foldwatch import` brings them into an experiment (docs/transfer.md)."""
