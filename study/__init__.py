"""transfer-study: measure which transfer-learning strategy fits N images from domain D."""

import os as _os

from study.cli_support import QUIET_ENV as _QUIET_ENV
from study.cli_support import install_hook as _install_hook

__version__ = "0.1.0"

if _os.environ.get(_QUIET_ENV) == "1":  # a spawned worker of a quiet CLI: its TensorFlow import stays quiet too
    _install_hook()
