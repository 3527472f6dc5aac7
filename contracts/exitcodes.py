"""Exit codes of `python -m trainer ...` (ARCHITECTURE.md section 4) and of `foldwatch`."""

OK = 0            # done, or stopped on request with a checkpoint saved
FAILED = 1        # foldwatch: the pipeline did not complete; trainer: unexpected crash
USAGE = 2         # usage / configuration error: permanent, never restarted
DATASET = 3       # dataset error: permanent, never restarted
BUSY = 73         # another live process holds the run folder (contracts.runlock): adopt it
NO_SPACE = 74     # no space left on the results disk: wait for space, do not count a restart
TRANSIENT = 75    # CUDA out of memory, device lost: restart (EX_TEMPFAIL)
INTERRUPTED = 130  # SIGINT / Ctrl-C: treated as a stop, not restarted

PERMANENT = frozenset({USAGE, DATASET})
