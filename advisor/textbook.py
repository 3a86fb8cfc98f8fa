"""The classic 2×2 rule of thumb, encoded exactly, so the advisor can be measured against it.

The rule (CS231n's "Transfer Learning" notes, the TensorFlow and Keras fine-tuning tutorials):

=============  =====================================  ===========================================
               similar to ImageNet                    different from ImageNet
=============  =====================================  ===========================================
small data     feature extraction                     fine-tune the top layers
large data     fine-tune more layers                  fine-tune everything (or train from scratch)
=============  =====================================  ===========================================

Thresholds and mapping onto the study's strategies (the choices are ours; the rule itself gives no numbers):

- **small** = fewer than ``SMALL_N`` = 1000 labelled images (the order of magnitude the tutorials call small:
  the TensorFlow tutorial's 2000 cats and dogs is "a small dataset"; 1000 sits between the study's 250 and 4000).
- **similar** = domain label ``natural``, or a relative domain gap below 1 (a Fréchet distance to natural photos
  below the median of the study's natural-photo datasets for the same backbone and size; see
  ``advisor.data.relative_gaps``). Every other domain (medical, digits, satellite, shift-ladder levels, unknown)
  is "different" unless its measured gap says otherwise.
- **fine-tune the top layers** and **fine-tune more layers** both map to ``fine_tune_top``: the study's
  ``fine_tune_top`` tunes how many top blocks to unfreeze (up to twice the backbone's default), which is how
  "more layers" is chosen in practice; ``full_fine_tune`` is kept for "fine-tune everything".
- **fine-tune everything or train from scratch** maps to ``full_fine_tune``.

Each quadrant is an ordered list: when a strategy was not measured in a cell (e.g. the CPU grid caps
``full_fine_tune`` at 1000 images and the shift ladder never runs it), the rule is applied with the next one, the
closest in freezing level with pretrained strategies first (so "fine-tune everything" falls back to
``fine_tune_top`` before "train from scratch": the generous reading, which keeps the baseline honest).
"""

from __future__ import annotations

from collections.abc import Collection

from study.train.strategies import strategy_records

SMALL_N = 1000
SIMILAR_GAP = 1.0
SIMILAR_DOMAINS = frozenset({"natural"})

def preferences(quadrant: tuple[str, str]) -> tuple[str, ...]:
    """Strategies in the rule's order of preference for a quadrant (first = what the rule says).

    Each strategy record states its rank per quadrant (``Strategy.textbook``), so the rule is data beside the
    strategy it names.
    """
    key = "/".join(quadrant)
    ranked = [(dict(r.textbook)[key], r.name) for r in strategy_records() if key in dict(r.textbook)]
    return tuple(name for _, name in sorted(ranked))


def quadrant(n_images: int, domain: str, gap: float | None = None) -> tuple[str, str]:
    """``("small" | "large", "similar" | "different")`` for a dataset's traits."""
    size = "small" if n_images < SMALL_N else "large"
    similar = domain in SIMILAR_DOMAINS or (gap is not None and gap == gap and gap < SIMILAR_GAP)
    return size, "similar" if similar else "different"


def textbook_rule(
    n_images: int, domain: str, gap: float | None = None, available: Collection[str] | None = None
) -> str:
    """The strategy the 2×2 rule picks; with ``available``, the first of its quadrant's list that was measured.

    >>> textbook_rule(200, "natural")
    'feature_extraction'
    >>> textbook_rule(5000, "medical", available={"fine_tune_top", "scratch_small"})
    'fine_tune_top'
    """
    choices = preferences(quadrant(n_images, domain, gap))
    if available is None:
        return choices[0]
    for strategy in choices:
        if strategy in available:
            return strategy
    return choices[0]
