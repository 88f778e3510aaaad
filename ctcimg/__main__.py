"""``python -m ctcimg`` runs the command line."""

import sys

from ctcimg.cli import main

sys.exit(main())
