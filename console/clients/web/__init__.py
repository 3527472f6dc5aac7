"""`foldwatch serve`: the console in a web browser.

One small aiohttp server (server.py) behind a token (gate.py); each browser tab runs its own
`foldwatch up EXP` process (tabs.py), a client of the experiment's supervisor, through
textual-serve's process protocol, so closing a tab ends only that process.
"""
