"""A simulated pairwise project: the side-biased annotator is flagged, the careful one is not."""

import numpy as np

from annotation.quality import metrics


def _simulate(seed, tasks=120):
    """Each annotator sees the two responses in a random order, as the lease randomises it."""
    rng = np.random.default_rng(seed)
    better_is_a = rng.random(tasks) < 0.5
    counts = {}
    for annotator in ("always_left", "agrees_with_gold", "noisy"):
        left = right = 0
        for t in range(tasks):
            a_shown_left = rng.random() < 0.5
            if annotator == "always_left":
                picks_left = True
            elif annotator == "agrees_with_gold":
                picks_left = better_is_a[t] == a_shown_left
            else:  # right 70% of the time, whatever the side
                correct = rng.random() < 0.7
                picks_left = (better_is_a[t] == a_shown_left) == correct
            left += picks_left
            right += not picks_left
        counts[annotator] = (left, right)
    return counts


def test_side_biased_annotator_is_flagged_and_gold_agreeing_one_is_not():
    for seed in range(5):
        result = metrics.position_bias(_simulate(seed), alpha=0.01)

        assert result["always_left"].flagged
        assert result["always_left"].p_value < 0.01
        assert result["always_left"].share_left == 1.0
        assert not result["agrees_with_gold"].flagged
        assert result["agrees_with_gold"].p_value > 0.01
        assert not result["noisy"].flagged
