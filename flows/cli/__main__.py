"""``python -m merflow.flows.cli``: the ``merflow`` command."""

import sys

from merflow.flows.cli import main

if __name__ == "__main__":
    sys.exit(main())
