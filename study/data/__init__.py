"""Layer 1, data: the dataset registry, loaders and downloads, leakage-safe subsets, the shift ladder.

Nothing here knows about models. Imports only ``study.errors``, ``study.config`` and ``study.registry``.
"""
