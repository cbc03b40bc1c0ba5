"""Length-grouped batches: little padding, every row once, reproducible per seed and epoch."""

import random

from rlhf.training.sampling import length_grouped_order, padding_fraction


def test_grouping_covers_every_row_once_and_cuts_padding():
    rng = random.Random(0)
    lengths = [rng.randint(20, 400) for _ in range(256)]
    order = length_grouped_order(lengths, 8, seed=1, epoch=0)
    shuffled = list(range(256))
    rng.shuffle(shuffled)
    assert sorted(order) == list(range(256))
    assert padding_fraction(lengths, order, 8) < 0.1
    assert padding_fraction(lengths, shuffled, 8) > 0.3


def test_the_order_depends_only_on_seed_and_epoch():
    lengths = list(range(100))
    assert length_grouped_order(lengths, 4, seed=3, epoch=1) == length_grouped_order(
        lengths, 4, seed=3, epoch=1
    )
    assert length_grouped_order(lengths, 4, seed=3, epoch=1) != length_grouped_order(
        lengths, 4, seed=3, epoch=2
    )
