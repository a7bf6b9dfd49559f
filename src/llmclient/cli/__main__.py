"""`python -m llmclient.cli`: the `llmclient` command."""

from __future__ import annotations

import sys

from llmclient.cli import main

if __name__ == "__main__":  # not when a test collector imports the module
    sys.exit(main())
