"""`python -m bench.gpu_check [--out DIR] [--steps ...] [--dry-run]` (see __init__.py)."""

import sys

from .cli import main

sys.exit(main())
