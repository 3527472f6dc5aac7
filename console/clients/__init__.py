"""The views of an experiment, each a client of its supervisor: the command line (cli/), the
Textual console (tui/), the headless lines and the text tables.
"""
