"""The exported ``weight`` column reaches the reward model's loss (tiny models, CPU)."""

import math

import pytest
import torch

from rlhf.training.config import RewardConfig
from rlhf.training.data import DatasetSplits, canonical_preference
from rlhf.training.reward import weighted_pair_loss
from rlhf.training.runner import run_training

from .conftest import preference_rows

FAST = {"max_steps": 2, "per_device_batch_size": 4, "eval_every_steps": 0, "seed": 3}


def test_the_weighted_bradley_terry_loss_matches_the_hand_computed_value():
    chosen = torch.tensor([1.0, 0.0, 2.0])
    rejected = torch.tensor([0.0, 1.0, 2.0])
    weight = torch.tensor([1.0, 0.5, 0.0])
    # -log sigmoid(1) = 0.31326, -log sigmoid(-1) = 1.31326; the third pair weighs nothing
    expected = (1.0 * 0.3132617 + 0.5 * 1.3132617) / 1.5
    assert weighted_pair_loss(chosen, rejected, weight).item() == pytest.approx(expected, 1e-5)
    # with a margin of 1 the first pair's difference is 0: -log sigmoid(0) = log 2
    margin = torch.tensor([1.0, 0.0, 0.0])
    with_margin = (math.log(2) + 0.5 * 1.3132617) / 1.5
    loss = weighted_pair_loss(chosen, rejected, weight, margin)
    assert loss.item() == pytest.approx(with_margin, 1e-5)
    # equal weights give TRL's plain mean
    ones = torch.ones(3)
    plain = -torch.nn.functional.logsigmoid(chosen - rejected).mean()
    assert weighted_pair_loss(chosen, rejected, ones).item() == pytest.approx(plain.item())
    # all-zero weights: no signal, and no NaN
    assert weighted_pair_loss(chosen, rejected, torch.zeros(3)).item() == 0.0


def test_a_weight_must_be_a_number_from_zero():
    row = preference_rows(1)[0]
    assert canonical_preference({**row, "weight": 0.75}, 0)["weight"] == 0.75
    assert canonical_preference(row, 0)["weight"] is None
    for bad in (-0.1, "1", True):
        with pytest.raises(ValueError, match="weight"):
            canonical_preference({**row, "weight": bad}, 0)


def test_a_reward_run_weighs_pairs_by_their_weight_and_records_it(tiny_encoder, tmp_path):
    # given pairs whose weights are all 0 but one: only that pair may move the model
    rows = preference_rows(8)
    for i, row in enumerate(rows):
        row["weight"] = 1.0 if i == 0 else 0.0
    splits = DatasetSplits(train=rows, validation=preference_rows(4, long_every=0))
    config = RewardConfig(
        base_model=str(tiny_encoder), backbone="encoder", head_init="random", **FAST
    )

    # when a reward model trains on them, and again on the same pairs with use_weights off
    weighted = run_training("reward", config, splits, tmp_path / "weighted")
    off = RewardConfig(
        base_model=str(tiny_encoder), backbone="encoder", head_init="random",
        use_weights=False, **FAST,
    )  # fmt: skip
    unweighted = run_training("reward", off, splits, tmp_path / "unweighted")

    # then each run says which it did, and the losses differ (the weights reached the loss)
    assert weighted.details["pair_weights"] == "weighted"
    assert unweighted.details["pair_weights"] == "unweighted: use_weights is off"
    assert weighted.metrics["train_loss"] != pytest.approx(unweighted.metrics["train_loss"])

    # and data without a weight column train unweighted, saying why
    for row in rows:
        del row["weight"]
    plain = run_training("reward", config, splits, tmp_path / "plain")
    assert plain.details["pair_weights"] == "unweighted: the data has no weight column"
