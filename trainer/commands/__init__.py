"""One module per `python -m trainer` command (see trainer/cli.py)."""
