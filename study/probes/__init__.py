"""Layer 4, probes: measurements of a dataset through frozen backbones (domain gap, LogME, kNN, linear probe)."""
