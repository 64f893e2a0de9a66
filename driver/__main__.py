"""``python -m terndb``: the ``terndb`` command line (see :mod:`terndb.cli`)."""
import sys

from terndb.cli import main

if __name__ == "__main__":
    sys.exit(main())
