"""``python -m graphmoe``: the same as the ``graphmoe`` command."""
import sys

from graphmoe.cli import main

if __name__ == "__main__":
    sys.exit(main())
