"""The `foldwatch` command."""
