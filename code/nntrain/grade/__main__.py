"""``python -m nntrain.grade``: see :mod:`nntrain.grade.cli`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
