"""A new reward head is fitted on frozen features before fine-tuning (linear probe, LP-FT)."""

import math

import pytest
import torch

from rlhf.training import DatasetSplits, RewardConfig, head_probe, rollout, run_training
from rlhf.training.data import canonical_rows
from rlhf.training.loading import load_sequence_classifier, load_tokenizer
from rlhf.training.tokens import encode_for_scoring

from .conftest import FAST, preference_rows


def synthetic_pairs(count: int, dims: int, *, signal: float, seed: int = 0):
    """Feature differences whose preference follows one known direction plus noise."""
    g = torch.Generator().manual_seed(seed)
    direction = torch.randn(dims, generator=g, dtype=torch.float64)
    diffs = torch.randn(count, dims, generator=g, dtype=torch.float64)
    logits = signal * (diffs @ direction) / direction.norm()
    chosen_first = torch.rand(count, generator=g, dtype=torch.float64) < torch.sigmoid(logits)
    # Rows are chosen minus rejected: flip those the "annotator" preferred the other way.
    diffs = torch.where(chosen_first[:, None], diffs, -diffs)
    return diffs, direction


def test_the_fit_recovers_the_direction_that_decides_the_preferences():
    # Given pairs whose preferences follow one direction in feature space
    diffs, direction = synthetic_pairs(400, 8, signal=4.0)
    zero = torch.zeros(len(diffs), dtype=diffs.dtype)

    # When the Bradley-Terry head is fitted with a light penalty
    weight = head_probe.fit_weights(diffs, zero, 1e-4)

    # Then it points along that direction and ranks most pairs correctly
    cosine = float(weight @ direction / (weight.norm() * direction.norm()))
    assert cosine > 0.95
    assert head_probe._accuracy(diffs, weight) > 0.85
    # ...and a heavier penalty shrinks it without turning it around
    heavy = head_probe.fit_weights(diffs, zero, 1.0)
    assert heavy.norm() < weight.norm()
    assert float(heavy @ weight) > 0


def test_the_fit_is_the_loss_minimum():
    # Given a fitted head
    diffs, _ = synthetic_pairs(200, 5, signal=2.0, seed=1)
    margins = torch.full((200,), 0.5, dtype=torch.float64)
    l2 = 1e-2
    weight = head_probe.fit_weights(diffs, margins, l2).requires_grad_(True)

    # When the penalised loss's gradient is taken there
    loss = head_probe.bradley_terry_loss(diffs, margins, weight) + l2 * weight.pow(2).sum()
    (grad,) = torch.autograd.grad(loss, weight)

    # Then it is zero (the problem is convex, so this is the global minimum)
    assert float(grad.abs().max()) < 1e-5


def test_cross_validation_picks_a_heavy_penalty_when_the_labels_are_noise():
    # Given preferences that carry no signal at all
    diffs, _ = synthetic_pairs(120, 30, signal=0.0, seed=2)
    zero = torch.zeros(len(diffs), dtype=diffs.dtype)

    # When the penalty is chosen by 5-fold cross-validation
    l2, cv_loss, cv_accuracy = head_probe.choose_l2(diffs, zero)

    # Then it is one of the heaviest, and the held-out figures show chance, not skill
    assert l2 >= 0.1
    assert cv_loss >= math.log(2) - 0.02
    assert 0.3 < cv_accuracy < 0.7


def test_a_head_that_cannot_beat_chance_out_of_sample_starts_at_zero():
    # Given fewer pairs than features and preferences that are pure noise
    diffs, _ = synthetic_pairs(40, 60, signal=0.0, seed=4)
    zero = torch.zeros(len(diffs), dtype=diffs.dtype)

    # When the head's weights are chosen
    weight, _, cv_loss, _ = head_probe.head_weights(diffs, zero)

    # Then no fit beat a constant score held out, so the head is all zeros
    assert cv_loss >= math.log(2)
    assert torch.count_nonzero(weight) == 0

    # And with a real signal the same call returns the fit
    diffs, _ = synthetic_pairs(200, 5, signal=4.0, seed=5)
    weight, _, cv_loss, _ = head_probe.head_weights(diffs, torch.zeros(200, dtype=diffs.dtype))
    assert cv_loss < math.log(2)
    assert torch.count_nonzero(weight) == 5


def test_cross_validation_picks_a_light_penalty_when_the_signal_is_strong():
    diffs, _ = synthetic_pairs(400, 5, signal=8.0, seed=3)
    zero = torch.zeros(len(diffs), dtype=diffs.dtype)

    l2, _, cv_accuracy = head_probe.choose_l2(diffs, zero)

    assert l2 <= 1e-2
    assert cv_accuracy > 0.85


@pytest.fixture(params=["tiny_lm", "tiny_encoder"])
def fresh_classifier(request):
    folder = request.getfixturevalue(request.param)
    tokenizer = load_tokenizer(folder)
    torch.manual_seed(0)
    model = load_sequence_classifier(folder, pad_token_id=tokenizer.pad_token_id)
    rows, _ = canonical_rows("preference", preference_rows(12))
    chosen, rejected = [], []
    for row in rows:
        answers = [row["chosen"], row["rejected"]]
        (c, r), _ = encode_for_scoring(tokenizer, row["prompt"], answers, 64)
        chosen.append(c)
        rejected.append(r)
    return model, tokenizer.pad_token_id, chosen, rejected


def scores(model, sequences, pad_id):
    return torch.tensor(
        rollout.score(model, sequences, pad_id=pad_id, device="cpu", precision="fp32", batch_size=5)
    )


def test_the_features_are_exactly_what_the_head_sees(fresh_classifier):
    # Given a backbone with a new head (decoder: last real token; encoder: pooled [CLS])
    model, pad_id, chosen, _ = fresh_classifier
    _, head = head_probe.linear_head(model)

    # When the pooled features are read with the head taken out
    features = head_probe.pooled_features(
        model, chosen, pad_id=pad_id, device="cpu", precision="fp32", batch_size=5
    )

    # Then the head applied to them gives the model's own scores, and the head is back in place
    with torch.no_grad():
        by_hand = head(features.float())[:, 0]
    assert torch.allclose(by_hand, scores(model, chosen, pad_id), atol=1e-5)
    assert head_probe.linear_head(model)[1] is head


def test_a_probed_head_scores_the_pairs_as_the_fit_does(fresh_classifier):
    # Given a new random head
    model, pad_id, chosen, rejected = fresh_classifier
    _, head = head_probe.linear_head(model)
    before = head.weight.detach().clone()
    assert model.tandem_new_head is True

    # When it is probed on the pairs
    result = head_probe.probe_head(
        model, chosen, rejected, None, pad_id=pad_id, device="cpu", precision="fp32", batch_size=5
    )

    # Then the head holds the fitted weights: the model's own accuracy is the fit's
    assert not torch.equal(before, head.weight)
    diff = scores(model, chosen, pad_id) - scores(model, rejected, pad_id)
    assert float((diff > 0).double().mean()) == pytest.approx(result.train_accuracy)
    assert result.pairs == 12
    assert result.features == head.in_features
    assert result.l2 in head_probe.L2_GRID
    # ...and where the head has a bias, the average training answer scores zero
    if head.bias is not None:
        both = torch.cat([scores(model, chosen, pad_id), scores(model, rejected, pad_id)])
        assert abs(float(both.mean())) < 1e-4


def test_a_reward_run_probes_a_new_head_and_keeps_a_trained_one(tiny_encoder, tmp_path):
    splits = DatasetSplits(train=preference_rows(8), validation=preference_rows(4, long_every=0))
    config = RewardConfig(base_model=str(tiny_encoder), backbone="encoder", **FAST)
    events = []

    # Given a first run on a bare encoder
    first = run_training("reward", config, splits, tmp_path / "first", progress=events.append)

    # Then its head was probed, the run says so, and the log reports it
    probe = first.details["head_init"]
    assert probe["mode"] == "probe"
    assert probe["pairs"] == 8
    assert 0.0 <= probe["cv_accuracy"] <= 1.0
    assert any("head probed" in e.message for e in events if e.kind == "log")

    # When training continues from that reward model
    again = RewardConfig(base_model=str(tmp_path / "first" / "model"), backbone="encoder", **FAST)
    second = run_training("reward", again, splits, tmp_path / "second")

    # Then its trained head is kept, not refitted
    assert second.details["head_init"]["mode"] == "trained"

    # And a run that asks for TRL's random start gets it
    plain = RewardConfig(
        base_model=str(tiny_encoder), backbone="encoder", head_init="random", **FAST
    )
    third = run_training("reward", plain, splits, tmp_path / "third")
    assert third.details["head_init"] == {"mode": "random"}
