"""The advisor: which transfer strategy and backbone for N images from domain D, learned from the study's results.

``Advisor().fit(runs, similarity).recommend({"n_images": 2000, "domain": "medical"})``; the ``advisor`` script
(``advisor.cli``) wraps it. ``load_results`` reads a results store or an export; ``leave_one_dataset_out`` scores
the advisor against the textbook 2x2 rule (``textbook_rule``).
"""

from advisor.data import AdvisorError, load_results
from advisor.evaluate import leave_one_dataset_out
from advisor.model import Advisor, Evidence, Option, Recommendation, Traits
from advisor.textbook import textbook_rule

__all__ = ["Advisor", "AdvisorError", "Evidence", "Option", "Recommendation", "Traits", "leave_one_dataset_out",
           "load_results", "textbook_rule"]  # fmt: skip
