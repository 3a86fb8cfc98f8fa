"""Layer 6, analysis: statistics over the results table (intervals, transfer gains), summaries and exports."""
