"""Active pair selection: scores, orders and priorities against hand-computed values."""

import math

import pytest
import torch

from rlhf.training import active
from rlhf.training.models import load_sequence_classifier, load_tokenizer


def test_uncertainty_ranks_the_smallest_reward_gap_first():
    # Given rewards whose gaps are 2.0, 0.1, 0.5 and 0.1 (ties between pairs 1 and 3)
    reward_a = torch.tensor([3.0, 0.0, -1.0, 0.3])
    reward_b = torch.tensor([1.0, 0.1, -0.5, 0.2])

    # When they are scored
    scores = active.uncertainty_scores(reward_a, reward_b)

    # Then each score is minus the gap, and the closest pairs lead the order
    assert scores.tolist() == pytest.approx([-2.0, -0.1, -0.5, -0.1])
    order = active.selection_order(
        active.SelectionConfig(strategy="uncertainty"), count=4, scores=scores
    )
    assert set(order[:2]) == {1, 3}
    assert order[2:] == [2, 0]


def test_disagreement_is_the_spread_of_the_members_preference_probability():
    # Given two members that agree on pair 0's features and split on pair 1's
    weights = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)
    pair_diffs = torch.tensor([[0.0, 5.0], [math.log(3.0), 0.0]], dtype=torch.float64)

    # When the spread is taken
    spread = active.disagreement_scores(weights, pair_diffs)

    # Then pair 0: both say 0.5 (no spread); pair 1: 0.75 and 0.25, population std 0.25
    assert spread.tolist() == pytest.approx([0.0, 0.25])


def test_bootstrap_members_differ_and_are_each_a_fit_of_a_resample():
    # Given labelled pairs with a clear direction
    g = torch.Generator().manual_seed(0)
    diffs = torch.randn(40, 3, generator=g, dtype=torch.float64)
    diffs[:, 0] = diffs[:, 0].abs() + 0.1  # the chosen side is always ahead on feature 0
    margins = torch.zeros(40, dtype=torch.float64)

    # When four members are refitted
    weights = active.bootstrap_weights(diffs, margins, members=4, l2=0.1, seed=7)

    # Then there are four, all agree on the sign of feature 0, and they are not all the same
    assert weights.shape == (4, 3)
    assert bool((weights[:, 0] > 0).all())
    assert float(weights.std(0).sum()) > 0
    # ...and the same seed gives the same ensemble
    assert torch.equal(weights, active.bootstrap_weights(diffs, margins, members=4, l2=0.1, seed=7))


def test_mix_keeps_the_random_share_in_every_prefix():
    # Given an informative order 0..9 and a shuffled order of the same pairs
    informative = list(range(10))
    shuffled = [9, 3, 8, 0, 7, 1, 6, 2, 5, 4]

    # When they are mixed with a 30% random share
    mixed = active.mixed_order(informative, shuffled, random_share=0.3)

    # Then positions 4, 7 and 10 (1-based: floor(0.3 n) steps up there) come from the shuffle,
    # skipping pairs already placed, and the rest follow the informative order
    assert mixed == [0, 1, 2, 9, 3, 4, 8, 5, 6, 7]
    assert sorted(mixed) == informative


def test_mix_with_no_random_share_is_the_informative_order_and_with_all_is_the_shuffle():
    informative, shuffled = [2, 0, 1, 3], [3, 1, 0, 2]
    assert active.mixed_order(informative, shuffled, random_share=0.0) == informative
    assert active.mixed_order(informative, shuffled, random_share=1.0) == shuffled


def test_random_is_a_seeded_shuffle_that_ignores_scores():
    config = active.SelectionConfig(strategy="random", seed=3)
    order = active.selection_order(config, count=6, scores=None)
    assert sorted(order) == list(range(6))
    assert order == active.random_order(6, seed=3)
    assert order != active.random_order(6, seed=4)


def test_priorities_put_the_first_of_the_order_highest():
    # Given the order: pair 2 first, then 0, then 1
    # Then pair 2 gets priority 3, pair 0 gets 2 and pair 1 gets 1
    assert active.priorities([2, 0, 1]) == [2, 1, 3]


def test_a_strategy_without_scores_or_an_unknown_one_is_refused():
    with pytest.raises(ValueError, match="one score per pair"):
        active.selection_order(active.SelectionConfig(strategy="uncertainty"), count=3, scores=None)
    errors = active.SelectionConfig(strategy="margin", random_share=2.0, ensemble_size=1).validate()
    assert len(errors) == 3


def test_the_linear_reward_scores_as_the_probe_fits():
    # Given responses whose first feature decides the preference
    g = torch.Generator().manual_seed(1)
    chosen = torch.randn(60, 4, generator=g, dtype=torch.float64)
    rejected = torch.randn(60, 4, generator=g, dtype=torch.float64)
    chosen[:, 0] += 3.0

    # When the head is fitted
    reward = active.fit_linear_reward(chosen, rejected)

    # Then it ranks the training pairs, leans on feature 0, and scores are w . standardised f
    assert float((reward.scores(chosen) > reward.scores(rejected)).double().mean()) > 0.9
    assert int(reward.weight.abs().argmax()) == 0
    by_hand = ((chosen[0] - reward.mean) / reward.scale) @ reward.weight
    assert float(reward.scores(chosen[:1])[0]) == pytest.approx(float(by_hand))


def test_strategies_order_a_tiny_models_pairs(tiny_encoder):
    # Given a tiny random encoder's features of four candidate pairs, and a head fitted on
    # labelled pairs of the same model
    tokenizer = load_tokenizer(tiny_encoder)
    torch.manual_seed(0)
    model = load_sequence_classifier(tiny_encoder, pad_token_id=tokenizer.pad_token_id)
    prompt = [{"role": "user", "content": "How do I make tea?"}]
    labelled = [(prompt, f"Boil water, then step {i}.", "No.") for i in range(12)]
    candidates = [
        (prompt, "Boil water first.", "No."),
        (prompt, "No.", "No."),
        (prompt, "Steep the leaves.", "Go away."),
        (prompt, "Boil it.", "Boil it!"),
    ]
    chosen, rejected = active.response_features(model, tokenizer, labelled, max_length=64)
    side_a, side_b = active.response_features(model, tokenizer, candidates, max_length=64)
    assert side_a.shape == (4, model.config.hidden_size)
    reward = active.fit_linear_reward(chosen, rejected)

    # When each strategy scores the candidates
    def order(strategy):
        config = active.SelectionConfig(strategy=strategy, ensemble_size=4)
        scores = active.pair_scores(
            config,
            reward,
            features_a=side_a,
            features_b=side_b,
            labelled_chosen=chosen,
            labelled_rejected=rejected,
        )
        return scores, active.selection_order(config, count=4, scores=scores)

    # Then uncertainty puts the pair with identical sides (gap exactly 0) first and follows
    # the gaps the head computes
    scores, ranked = order("uncertainty")
    gaps = (reward.scores(side_a) - reward.scores(side_b)).abs()
    assert float(scores[1]) == 0.0
    assert ranked[0] == 1
    assert ranked == sorted(range(4), key=lambda i: float(gaps[i]))
    # ...disagreement: no member can disagree on identical sides, so that pair comes last
    spread, ranked = order("disagreement")
    assert float(spread[1]) == 0.0
    assert ranked[-1] == 1
    assert ranked == sorted(range(4), key=lambda i: -float(spread[i]))
    # ...and random needs no model at all
    assert order("random") == (None, active.random_order(4, seed=0))
