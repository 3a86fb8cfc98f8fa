"""transfer-study: measure which transfer-learning strategy fits N images from domain D."""

__version__ = "0.1.0"
