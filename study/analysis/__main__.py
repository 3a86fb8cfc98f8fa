"""``python -m study.analysis``: the analysis tables of a results store."""

import sys

from study.analysis.tables import main

sys.exit(main())
