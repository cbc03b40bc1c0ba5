"""Active pair selection: which unlabelled pairs to annotate next (issue 16).

Each pair ``(a, b)`` of responses to one prompt is scored by how much its label would teach
the current reward model, and the pairs are ranked most informative first:

- ``random``: a seeded shuffle. The default until a reward model exists, and the only order
  whose labels are an unbiased sample of the pool (what evaluation needs).
- ``uncertainty``: the smallest reward gap ``|r(a) - r(b)|`` first. Under Bradley-Terry
  ``P(a > b) = sigmoid(r(a) - r(b))``, so a zero gap is the pair the model is least sure
  of (uncertainty sampling, Lewis & Gale 1994).
- ``disagreement``: the largest spread of ``P(a > b)`` across an ensemble first (query by
  committee, Seung et al. 1992). The ensemble is bootstrap refits of the reward model's linear
  head on frozen backbone features (see ``head_probe``): one forward pass per response, then
  each member is a convex fit of a few hundred pairs.
- ``mix``: the uncertainty order with a fixed share of random picks interleaved, so that
  every prefix (every batch) keeps about ``random_share`` of its pairs unbiased.

Everything here is a pure function of tensors and seeds; scoring responses with a model is
the caller's (``response_features`` and ``head_probe.pooled_features`` do the forward pass).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from rlhf.training import head_probe
from rlhf.training.tokens import encode_for_scoring

STRATEGIES = ("random", "uncertainty", "disagreement", "mix")


@dataclass(frozen=True)
class SelectionConfig:
    """How the next pairs are chosen; stored with the scores so a ranking can be redone."""

    strategy: str = "random"  # one of STRATEGIES; random until a reward model exists
    random_share: float = 0.3  # mix only: share of each prefix drawn at random, in [0, 1]
    ensemble_size: int = 8  # disagreement only: bootstrap refits of the head (>= 2)
    seed: int = 0  # the shuffle, the bootstrap resamples and the tie order

    def validate(self) -> list[str]:
        errors = []
        if self.strategy not in STRATEGIES:
            errors.append(f"strategy: one of {', '.join(STRATEGIES)}, not {self.strategy!r}")
        if not 0.0 <= self.random_share <= 1.0:
            errors.append("random_share: between 0 and 1")
        if self.ensemble_size < 2:
            errors.append("ensemble_size: at least 2 (one member has no spread)")
        return errors

    def as_dict(self) -> dict:
        return asdict(self)


# --- informativeness: higher is more worth a label -------------------------------------------


def uncertainty_scores(reward_a: torch.Tensor, reward_b: torch.Tensor) -> torch.Tensor:
    """``-|r(a) - r(b)|``: the closest pair scores highest. ``(pairs,), (pairs,) -> (pairs,)``."""
    return -(reward_a - reward_b).abs()


def bootstrap_weights(
    diffs: torch.Tensor, margins: torch.Tensor, *, members: int, l2: float, seed: int
) -> torch.Tensor:
    """Heads refitted on bootstrap resamples of the labelled pairs.

    ``diffs``: ``(pairs, features)`` standardised ``f(chosen) - f(rejected)``; returns
    ``(members, features)``. The penalty is the one cross-validation chose for the full fit:
    choosing it again per member would cost ``members`` times the grid for little change.
    """
    count = diffs.shape[0]
    generator = torch.Generator().manual_seed(seed)
    weights = []
    for _ in range(members):
        picked = torch.randint(count, (count,), generator=generator)  # (pairs,) with repeats
        weights.append(head_probe.fit_weights(diffs[picked], margins[picked], l2))
    return torch.stack(weights)  # (members, features)


def disagreement_scores(weights: torch.Tensor, pair_diffs: torch.Tensor) -> torch.Tensor:
    """Spread (population std) of ``P(a > b)`` over the ensemble.

    ``weights``: ``(members, features)``; ``pair_diffs``: ``(pairs, features)`` standardised
    ``f(a) - f(b)``; returns ``(pairs,)``.
    """
    probabilities = torch.sigmoid(pair_diffs @ weights.T)  # (pairs, members)
    return probabilities.std(dim=1, unbiased=False)


# --- orders: indices of the pairs, the one to label first at position 0 -----------------------


def random_order(count: int, *, seed: int) -> list[int]:
    return torch.randperm(count, generator=torch.Generator().manual_seed(seed)).tolist()


def informative_order(scores: torch.Tensor, *, seed: int) -> list[int]:
    """Highest score first; equal scores in a seeded random order (not the input's order,
    which would favour whatever came first in the pool, e.g. one import's rows)."""
    shuffled = random_order(len(scores), seed=seed)
    keyed = scores[shuffled]
    ranked = torch.sort(keyed, descending=True, stable=True).indices.tolist()
    return [shuffled[i] for i in ranked]


def mixed_order(informative: list[int], shuffled: list[int], *, random_share: float) -> list[int]:
    """Interleave two orders of the same pairs so each prefix of length n holds
    ``floor(n * random_share)`` picks from ``shuffled`` (the rest from ``informative``),
    skipping pairs the other order already placed."""
    placed: set[int] = set()
    out: list[int] = []
    sources = {True: iter(shuffled), False: iter(informative)}
    for position in range(len(informative)):
        from_random = _random_picks(position + 1, random_share) > _random_picks(
            position, random_share
        )
        for index in sources[from_random]:
            if index not in placed:
                break
        placed.add(index)
        out.append(index)
    return out


def _random_picks(prefix: int, share: float) -> int:
    return math.floor(round(prefix * share, 9))  # 100 * 0.29 is 28.999999999999996


def selection_order(
    config: SelectionConfig, *, count: int, scores: torch.Tensor | None
) -> list[int]:
    """The full order of ``count`` pairs under the strategy. ``scores``: ``(count,)``
    informativeness (uncertainty for ``mix``), unused by ``random``."""
    shuffled = random_order(count, seed=config.seed)
    if config.strategy == "random":
        return shuffled
    if scores is None or len(scores) != count:
        raise ValueError(f"{config.strategy} needs one score per pair")
    informative = informative_order(scores, seed=config.seed)
    if config.strategy == "mix":
        return mixed_order(informative, shuffled, random_share=config.random_share)
    return informative


def priorities(order: list[int]) -> list[int]:
    """``Task.priority`` per pair (higher is claimed sooner): ``count - rank``, so the first of
    ``count`` pairs gets ``count`` and the last gets 1."""
    out = [0] * len(order)
    for rank, index in enumerate(order):
        out[index] = len(order) - rank
    return out


# --- the reward model as a probed linear head on frozen features -----------------------------


@dataclass(frozen=True)
class LinearReward:
    """``r(x) = weight . (f(x) - mean) / scale``: a Bradley-Terry head on frozen features."""

    mean: torch.Tensor  # (features,)
    scale: torch.Tensor  # (features,) standard deviations, 1 where a feature is constant
    weight: torch.Tensor  # (features,) in standardised units
    l2: float

    def standardise(self, features: torch.Tensor) -> torch.Tensor:
        return (features - self.mean) / self.scale  # (n, features)

    def scores(self, features: torch.Tensor) -> torch.Tensor:
        return self.standardise(features) @ self.weight  # (n, features) -> (n,)


def fit_linear_reward(
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    *,
    seed: int = 0,
    cv_repeats: int = head_probe.REPEATS,
) -> LinearReward:
    """The head ``head_probe`` would install, fitted on labelled pairs' frozen features.

    ``chosen``, ``rejected``: ``(pairs, features)``. Standardised on these responses, penalty
    by cross-validation (``cv_repeats`` shuffles of the k folds), zero weights when nothing
    beats chance out of sample.
    """
    fit = head_probe.standardised_fit(
        chosen.double(), rejected.double(), seed=seed, repeats=cv_repeats
    )
    return LinearReward(mean=fit.mean, scale=fit.scale, weight=fit.weight, l2=fit.l2)


def pair_scores(
    config: SelectionConfig,
    reward: LinearReward,
    *,
    features_a: torch.Tensor,
    features_b: torch.Tensor,
    labelled_chosen: torch.Tensor | None = None,
    labelled_rejected: torch.Tensor | None = None,
) -> torch.Tensor | None:
    """Informativeness of each candidate pair under the strategy (None for ``random``).

    ``features_a``, ``features_b``: ``(pairs, features)`` frozen features of the candidates'
    two sides; ``labelled_*``: the pairs ``reward`` was fitted on (``disagreement`` refits
    its ensemble on resamples of them).
    """
    if config.strategy == "random":
        return None
    if config.strategy in ("uncertainty", "mix"):
        return uncertainty_scores(reward.scores(features_a), reward.scores(features_b))
    if labelled_chosen is None or labelled_rejected is None:
        raise ValueError("disagreement needs the labelled pairs to refit its ensemble")
    diffs = (labelled_chosen.double() - labelled_rejected.double()) / reward.scale
    weights = bootstrap_weights(
        diffs,
        torch.zeros(len(diffs), dtype=diffs.dtype),
        members=config.ensemble_size,
        l2=reward.l2,
        seed=config.seed,
    )
    pair_diffs = (features_a.double() - features_b.double()) / reward.scale
    return disagreement_scores(weights, pair_diffs)


def response_features(
    model,
    tokenizer,
    pairs: list[tuple[list[dict], str, str]],
    *,
    max_length: int,
    device: str = "cpu",
    precision: str = "fp32",
    batch_size: int = 16,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Frozen features of both sides of each ``(prompt, a, b)``, laid out as the reward model
    scores them (``tokens.encode_for_scoring``); ``((pairs, features), (pairs, features))``."""
    sequences_a, sequences_b = [], []
    for prompt, answer_a, answer_b in pairs:
        (a, b), _ = encode_for_scoring(tokenizer, prompt, [answer_a, answer_b], max_length)
        sequences_a.append(a)
        sequences_b.append(b)
    features = head_probe.pooled_features(
        model,
        [*sequences_a, *sequences_b],
        pad_id=tokenizer.pad_token_id,
        device=device,
        precision=precision,
        batch_size=batch_size,
    )  # (2 * pairs, features)
    return features[: len(pairs)], features[len(pairs) :]
