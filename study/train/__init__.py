"""Layer 4, training: the strategy records, the training loops they use, tuning and deployment export."""
