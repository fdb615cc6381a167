"""``python -m xdownscale.cli ...``: the same as the ``xdownscale`` command."""
import sys

from . import main

sys.exit(main())
