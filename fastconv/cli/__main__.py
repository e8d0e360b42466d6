"""``python -m fastconv.cli ...``: the ``fastconv`` command."""

import sys

from fastconv.cli.dispatch import main

if __name__ == "__main__":
    sys.exit(main())
