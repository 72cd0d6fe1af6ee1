"""``python -m taskadapt`` (and ``torchrun -m taskadapt``) runs the command line."""

import sys

from taskadapt.cli import main

sys.exit(main())
