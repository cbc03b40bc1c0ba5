"""The arithmetic of PPO for language models, as small pure functions with shapes noted.

Conventions (Huang et al. 2024, "The N+ Implementation Details of RLHF with PPO"):
- a response of R tokens is R actions; per-token tensors are (batch, R) with a 0/1 ``mask``
  that is 1 up to and including the end-of-turn token;
- the reward of token t is ``-kl_coef * (logp_t - ref_logp_t)`` plus, on the last real token
  only, the reward model's score of the whole answer;
- advantages come from GAE over those rewards and the value model's per-token values, and are
  whitened over the batch before the clipped policy loss.
"""

from __future__ import annotations

import torch


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values * mask).sum() / mask.sum().clamp(min=1)


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, *, shift_mean: bool = True):
    """Zero mean (optional) and unit variance over the masked entries; masked-out stay 0."""
    mean = masked_mean(values, mask)
    var = masked_mean((values - mean) ** 2, mask)
    # Bessel's correction, as the reference implementations do.
    count = mask.sum()
    if count > 1:
        var = var * count / (count - 1)
    whitened = (values - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0):
    """log p(token) under ``logits / temperature``.

    logits: (batch, R, vocab) predicting ``tokens``: (batch, R) -> (batch, R).
    The sampling temperature divides the logits here too, so that the probabilities PPO
    optimises are the ones the answers were sampled from.
    """
    logp = torch.log_softmax(logits.float() / temperature, dim=-1)
    return logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def per_token_rewards(
    score: torch.Tensor,
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    mask: torch.Tensor,
    kl_coef: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rewards (batch, R) = -kl_coef * KL estimate per token, + score at the last real token.

    Returns (rewards, kl) where kl is the per-token estimate ``logp - ref_logp`` (k1), masked.
    """
    kl = (logprobs - ref_logprobs) * mask
    rewards = -kl_coef * kl
    last = (mask.sum(dim=1).long() - 1).clamp(min=0)  # (batch,) index of the last real token
    rewards[torch.arange(rewards.shape[0]), last] += score
    return rewards * mask, kl


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, *, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016), right to left.

    rewards, values, mask: (batch, R). After the last real token the value is 0 (episode over).
    delta_t = r_t + gamma * V_{t+1} - V_t;  A_t = delta_t + gamma * lam * A_{t+1}.
    Returns (advantages, returns = advantages + values), both masked.
    """
    values = values * mask
    length = rewards.shape[1]
    advantages = torch.zeros_like(rewards)
    next_advantage = torch.zeros(rewards.shape[0], dtype=rewards.dtype, device=rewards.device)
    for t in reversed(range(length)):
        next_value = values[:, t + 1] if t + 1 < length else torch.zeros_like(next_advantage)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        next_advantage = delta + gamma * lam * next_advantage
        next_advantage = next_advantage * mask[:, t]
        advantages[:, t] = next_advantage
    return advantages * mask, (advantages + values) * mask


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_range: float,
) -> tuple[torch.Tensor, dict]:
    """Clipped surrogate: mean over real tokens of max(-A r, -A clip(r, 1-eps, 1+eps))."""
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    stats = {
        "clip_fraction": float(masked_mean((clipped > unclipped).float(), mask)),
        "approx_kl": float(0.5 * masked_mean((logprobs - old_logprobs) ** 2, mask)),
    }
    return loss, stats


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip_range: float,
) -> tuple[torch.Tensor, dict]:
    """Clipped value loss: 0.5 * mean over real tokens of max((V-G)^2, (V_clipped-G)^2)."""
    clipped_values = old_values + torch.clamp(values - old_values, -clip_range, clip_range)
    unclipped = (values - returns) ** 2
    clipped = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped, clipped), mask)
    return loss, {"value_clip_fraction": float(masked_mean((clipped > unclipped).float(), mask))}


class AdaptiveKLController:
    """Adapts the KL coefficient towards a target KL (Ziegler et al. 2019, section 2.2).

    e = clip(KL / target - 1, -0.2, 0.2);  coef <- coef * (1 + e * n_steps / horizon)
    """

    def __init__(self, init_coef: float, target: float, horizon: int):
        self.value = init_coef
        self.target = target
        self.horizon = horizon

    def update(self, current_kl: float, n_steps: int) -> float:
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon
        return self.value


def first_eos_mask(responses: torch.Tensor, eos_id: int, pad_id: int):
    """Mask (batch, R) of real tokens: up to and including the first EOS; and has-EOS (batch,).

    Tokens after the first EOS are replaced by ``pad_id`` in the returned copy.
    """
    is_eos = responses == eos_id
    # position of the first EOS, or R when there is none
    length = responses.shape[1]
    first = torch.where(
        is_eos.any(dim=1),
        is_eos.float().argmax(dim=1),
        torch.full((responses.shape[0],), length, device=responses.device),
    )
    positions = torch.arange(length, device=responses.device).unsqueeze(0)
    mask = (positions <= first.unsqueeze(1)).long()
    cleaned = torch.where(mask.bool(), responses, torch.full_like(responses, pad_id))
    return cleaned, mask, is_eos.any(dim=1)
