"""Layer 1, data: the dataset registry, format readers, decoded cache, loaders and downloads, leakage-safe subsets,
the shift ladder.

Nothing here knows about models. Imports only ``study.errors``, ``study.config`` and ``study.registry``.
"""
