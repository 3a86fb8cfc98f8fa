"""Layer 4, training: the strategy records, the training loops they use, tuning and deployment export."""

# The built-in text and domain-adaptation (#20) strategies register themselves from their own modules (as a plugin
# would); importing them here makes them known wherever any strategy is.
from study.train import adaptation as _adaptation  # noqa: E402, F401
from study.train import text_strategies as _text_strategies  # noqa: E402, F401
