"""``python -m advisor`` = the ``advisor`` script."""

import sys

from advisor.cli import main

sys.exit(main())
