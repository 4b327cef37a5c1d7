"""``python -m rag``: the command-line twin of the app."""

import sys

from rag.cli import main

sys.exit(main())
