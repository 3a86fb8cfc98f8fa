"""Layer 2, model zoo: the backbone registry (ImageNet models as data), weights and input preprocessing."""
