"""Layer 3, cache: whatever a frozen part of a network computes, computed once and stored on disk."""
