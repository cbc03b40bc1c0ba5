"""PPO arithmetic against values computed by hand."""

import math

import pytest
import torch

from rlhf.training import ppo_math


def test_gae_matches_hand_computation_without_padding():
    # Given rewards [0, 0, 1] and values [0.5, 0.4, 0.3], gamma 1, lambda 0.5
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.4, 0.3]])
    mask = torch.ones(1, 3)
    # When
    advantages, returns = ppo_math.gae(rewards, values, mask, gamma=1.0, lam=0.5)
    # Then: A2 = 1 - 0.3 = 0.7; A1 = (0.3 - 0.4) + 0.5 * 0.7 = 0.25; A0 = (0.4 - 0.5) + 0.125
    assert advantages[0].tolist() == pytest.approx([0.025, 0.25, 0.7])
    assert returns[0].tolist() == pytest.approx([0.525, 0.65, 1.0])


def test_gae_ignores_everything_after_the_last_real_token():
    # Given a 2-token answer padded to 3, with a junk value on the padding
    rewards = torch.tensor([[0.0, 1.0, 0.0]])
    values = torch.tensor([[0.5, 0.4, 9.9]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    # When
    advantages, returns = ppo_math.gae(rewards, values, mask, gamma=0.9, lam=1.0)
    # Then: A1 = 1 - 0.4 = 0.6; A0 = 0.9 * 0.4 - 0.5 + 0.9 * 0.6 = 0.4; padding stays 0
    assert advantages[0].tolist() == pytest.approx([0.4, 0.6, 0.0])
    assert returns[0].tolist() == pytest.approx([0.9, 1.0, 0.0])


def test_policy_loss_clips_the_ratio_and_stops_its_gradient():
    # Given ratios 1.5 and 0.5 on tokens with advantage +1, clip 0.2
    logprobs = torch.tensor([[math.log(1.5), math.log(0.5)]], requires_grad=True)
    old = torch.zeros(1, 2)
    advantages = torch.ones(1, 2)
    mask = torch.ones(1, 2)
    # When
    loss, stats = ppo_math.policy_loss(logprobs, old, advantages, mask, clip_range=0.2)
    loss.backward()
    # Then: token 0 is clipped to -1.2 (no gradient); token 1 keeps -0.5
    assert float(loss) == pytest.approx((-1.2 - 0.5) / 2)
    assert logprobs.grad[0].tolist() == pytest.approx([0.0, -0.25])
    assert stats["clip_fraction"] == pytest.approx(0.5)


def test_policy_loss_clips_from_below_for_negative_advantages():
    logprobs = torch.tensor([[math.log(0.5)]])
    loss, _ = ppo_math.policy_loss(
        logprobs, torch.zeros(1, 1), -torch.ones(1, 1), torch.ones(1, 1), clip_range=0.2
    )
    # max(-(-1) * 0.5, -(-1) * 0.8) = 0.8
    assert float(loss) == pytest.approx(0.8)


def test_value_loss_takes_the_larger_of_clipped_and_unclipped_errors():
    # Given the value moved from 0 to 0.5 towards a return of 1, clip 0.2
    loss, stats = ppo_math.value_loss(
        torch.tensor([[0.5]]), torch.zeros(1, 1), torch.ones(1, 1), torch.ones(1, 1), 0.2
    )
    # Then: clipped value 0.2 -> (0.8)^2 = 0.64 beats (0.5)^2; loss = 0.5 * 0.64
    assert float(loss) == pytest.approx(0.32)
    assert stats["value_clip_fraction"] == 1.0


def test_per_token_rewards_put_the_kl_penalty_on_each_token_and_the_score_on_the_last():
    logprobs = torch.tensor([[-1.0, -2.0, -3.0]])
    ref = torch.tensor([[-1.5, -2.0, -2.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    rewards, kl = ppo_math.per_token_rewards(torch.tensor([2.0]), logprobs, ref, mask, 0.1)
    assert kl[0].tolist() == pytest.approx([0.5, 0.0, 0.0])
    assert rewards[0].tolist() == pytest.approx([-0.05, 2.0, 0.0])


def test_adaptive_kl_controller_moves_by_the_clipped_proportional_error():
    controller = ppo_math.AdaptiveKLController(0.1, target=6.0, horizon=10_000)
    # KL twice the target: error clipped to +0.2 -> coef * (1 + 0.2 * 100 / 10000)
    assert controller.update(12.0, n_steps=100) == pytest.approx(0.1002)
    # KL half the target: error clipped to -0.2
    assert controller.update(3.0, n_steps=100) == pytest.approx(0.1002 * 0.998)


def test_first_eos_mask_keeps_tokens_through_the_first_end_of_turn():
    responses = torch.tensor([[5, 2, 7, 2], [5, 6, 7, 8]])
    cleaned, mask, has_eos = ppo_math.first_eos_mask(responses, eos_id=2, pad_id=0)
    assert cleaned.tolist() == [[5, 2, 0, 0], [5, 6, 7, 8]]
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    assert has_eos.tolist() == [True, False]


def test_masked_whiten_uses_only_real_tokens():
    values = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    # mean 2, unbiased variance 1
    assert ppo_math.masked_whiten(values, mask)[0].tolist() == pytest.approx(
        [-1.0, 0.0, 1.0, 0.0], abs=1e-6
    )


def test_token_logprobs_divide_logits_by_the_sampling_temperature():
    logits = torch.tensor([[[0.0, math.log(3.0)]]])  # probabilities 1/4, 3/4 at temperature 1
    tokens = torch.tensor([[1]])
    assert float(ppo_math.token_logprobs(logits, tokens)) == pytest.approx(math.log(0.75))
    # at temperature 2 the logits halve: p = sqrt(3) / (1 + sqrt(3))
    expected = math.log(math.sqrt(3) / (1 + math.sqrt(3)))
    assert float(ppo_math.token_logprobs(logits, tokens, 2.0)) == pytest.approx(expected)
