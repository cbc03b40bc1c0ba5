"""Statistics of blind pairwise reviews: win rate with a confidence interval, Bradley-Terry.

Pure Python + NumPy/SciPy, no Django: the registry's selectors turn review labels into
``Comparison`` values and hand them here.

Ties are counted as half a win for each side, everywhere, and are always reported separately:

- **Win rate** of a candidate against a champion: ``(wins + ties / 2) / comparisons``, with a 95%
  **Wilson score interval** computed with that rate and the number of comparisons. Each outcome
  scores 1, 1/2 or 0; the variance of such a score is ``p(1-p) - ties/(4n)``, never more than the
  Bernoulli ``p(1-p)`` that Wilson assumes, so with ties the interval is slightly conservative
  (wider), never optimistic. The interval itself is ``rlhf.training.intervals.wilson_interval``
  (shared with reward-model accuracy on the run page). The decisive win rate (ties left out)
  is reported too.
- **Bradley-Terry**: ``P(i beats j) = pi_i / (pi_i + pi_j)``, fitted by maximum likelihood with
  the MM algorithm of Hunter (2004, "MM algorithms for generalized Bradley-Terry models", eq. 3):
  ``pi_i <- W_i / sum_j N_ij / (pi_i + pi_j)``, where ``W_i`` counts i's wins plus half its ties
  and ``N_ij`` all comparisons of i and j. Each step increases the likelihood, so it converges
  whenever the maximum exists. With ties as half wins, two versions fitted alone give
  ``pi_a / (pi_a + pi_b)`` equal to the win rate above: the two views agree.

  Strengths are reported as ``theta = log pi`` centred on mean zero (only differences are
  identified), and as an Elo-like rating ``1000 + 400 * log10(pi)``. The maximum likelihood
  estimate exists only when the "has won or tied against" graph is strongly connected (Ford,
  1957); a version that won every comparison has an infinite strength. ``prior_games`` adds that
  many virtual games, split evenly, between every pair that was actually compared, which keeps
  the estimate finite and shrinks small samples towards equal strength (default 1: one virtual
  tie per compared pair).
- **Bootstrap intervals** for the strengths: the comparisons are resampled with replacement
  (a multinomial draw over the observed (pair, outcome) cells, which is the same thing), the
  model is refitted, and the 2.5th/97.5th percentiles of each centred strength are reported.
  Resamples without a finite estimate (possible only with ``prior_games=0``) are dropped and
  counted.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.sparse.csgraph import connected_components

from rlhf.training.intervals import wilson_interval  # the one implementation

Outcome = Literal["a", "b", "tie"]
ELO_SCALE = 400.0 / math.log(10.0)
ELO_BASE = 1000.0


@dataclass(frozen=True)
class Comparison:
    """One blind pairwise judgement: ``outcome`` says which side won, or that it was a tie."""

    a: Hashable
    b: Hashable
    outcome: Outcome

    def __post_init__(self) -> None:
        if self.outcome not in ("a", "b", "tie"):
            raise ValueError(f"outcome must be 'a', 'b' or 'tie', not {self.outcome!r}")
        if self.a == self.b:
            raise ValueError("a version cannot be compared with itself")


# ---------------------------------------------------------------------------------------------
# Win rate


@dataclass(frozen=True)
class WinRate:
    wins: int
    losses: int
    ties: int
    win_rate: float
    """(wins + ties / 2) / comparisons."""
    ci_low: float
    ci_high: float
    """95% Wilson score interval of win_rate."""
    decisive_win_rate: float | None
    """wins / (wins + losses); None when every comparison was a tie."""

    @property
    def comparisons(self) -> int:
        return self.wins + self.losses + self.ties

    @property
    def tie_rate(self) -> float:
        return self.ties / self.comparisons

    @property
    def significantly_better(self) -> bool:
        """The whole interval lies above one half."""
        return self.ci_low > 0.5


def win_rate(wins: int, losses: int, ties: int) -> WinRate:
    """The candidate's win rate from its counts against one opponent."""
    if min(wins, losses, ties) < 0:
        raise ValueError("counts cannot be negative")
    n = wins + losses + ties
    if n == 0:
        raise ValueError("no comparisons yet")
    rate = (wins + ties / 2) / n
    low, high = wilson_interval(rate, n)
    decisive = wins + losses
    return WinRate(
        wins=wins,
        losses=losses,
        ties=ties,
        win_rate=rate,
        ci_low=low,
        ci_high=high,
        decisive_win_rate=wins / decisive if decisive else None,
    )


def head_to_head(
    comparisons: Iterable[Comparison], candidate: Hashable, champion: Hashable
) -> WinRate:
    """Win rate of ``candidate`` over the comparisons that put it against ``champion``."""
    wins = losses = ties = 0
    for c in comparisons:
        if {c.a, c.b} != {candidate, champion}:
            continue
        if c.outcome == "tie":
            ties += 1
        elif (c.outcome == "a") == (c.a == candidate):
            wins += 1
        else:
            losses += 1
    return win_rate(wins, losses, ties)


# ---------------------------------------------------------------------------------------------
# Length-controlled win rate


@dataclass(frozen=True)
class LengthControlledWinRate:
    win_rate: float
    """The predicted win rate had both answers been the same length: sigmoid(intercept)."""
    ci_low: float
    ci_high: float
    """95% percentile bootstrap interval (prompts resampled)."""
    length_slope: float
    """How much the outcome follows the length difference (logit per unit of the squashed
    difference); positive: the longer answer wins more often."""


def _length_logit_fit(x: np.ndarray, y: np.ndarray, ridge: float) -> tuple[float, float]:
    """(intercept, slope) of a logistic regression of y (1 win, 0 loss, 0.5 tie) on x, by
    Newton's method with a small ridge on the slope (it keeps a perfectly separated sample
    finite); ties count as half a win."""
    a = b = 0.0
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-(a + b * x)))
        w = p * (1 - p)
        grad = np.array([np.sum(y - p), np.sum((y - p) * x) - ridge * b])
        hess = np.array(
            [[np.sum(w) + 1e-9, np.sum(w * x)], [np.sum(w * x), np.sum(w * x * x) + ridge]]
        )
        step = np.linalg.solve(hess, grad)
        a, b = a + step[0], b + step[1]
        if np.max(np.abs(step)) < 1e-8:
            break
    return float(a), float(b)


def length_controlled_win_rate(
    outcomes: Sequence[float], length_differences: Sequence[float], *,
    bootstrap_samples: int = 1000, seed: int = 0, ridge: float = 0.01,
) -> LengthControlledWinRate:  # fmt: skip
    """The candidate's win rate with the length of its answers taken out, as AlpacaEval's
    length-controlled win rate does: a logistic regression of each comparison's outcome
    (1, 0 or 0.5) on the length difference (candidate minus opponent, squashed by
    tanh(d / sd) so one very long answer cannot dominate), read at a difference of zero.

    A judge (or a person) who prefers longer answers gives a candidate that writes longer a
    raw win rate above what it earns; a candidate that wins by writing shorter, the reverse."""
    y = np.asarray(outcomes, dtype=float)
    d = np.asarray(length_differences, dtype=float)
    if y.shape != d.shape or y.size == 0:
        raise ValueError("one length difference per outcome, and at least one")
    scale = float(np.std(d)) or 1.0
    x = np.tanh(d / scale)
    intercept, slope = _length_logit_fit(x, y, ridge)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(bootstrap_samples):
        pick = rng.integers(0, y.size, y.size)
        draws.append(_length_logit_fit(x[pick], y[pick], ridge)[0])
    low, high = np.percentile(1.0 / (1.0 + np.exp(-np.array(draws))), [2.5, 97.5])
    return LengthControlledWinRate(
        win_rate=1.0 / (1.0 + math.exp(-intercept)),
        ci_low=float(low),
        ci_high=float(high),
        length_slope=slope,
    )


# ---------------------------------------------------------------------------------------------
# Bradley-Terry


class NoFiniteEstimate(ValueError):
    """The comparisons do not pin down finite strengths (see the module docstring)."""


@dataclass(frozen=True)
class BradleyTerryFit:
    versions: list[Hashable]
    strengths: np.ndarray
    """theta = log pi per version, centred on mean zero. Shape (versions,)."""
    iterations: int

    def strength(self, version: Hashable) -> float:
        return float(self.strengths[self.versions.index(version)])

    def probability(self, winner: Hashable, loser: Hashable) -> float:
        """Modelled P(winner beats loser), ties counted as half."""
        diff = self.strength(winner) - self.strength(loser)
        return 1.0 / (1.0 + math.exp(-diff))


def score_matrix(
    comparisons: Iterable[Comparison], versions: Sequence[Hashable]
) -> tuple[np.ndarray, np.ndarray]:
    """wins[i, j] = wins of i over j plus half their ties; games[i, j] = all their comparisons."""
    index = {v: i for i, v in enumerate(versions)}
    k = len(versions)
    wins = np.zeros((k, k))
    for c in comparisons:
        i, j = index[c.a], index[c.b]
        if c.outcome == "a":
            wins[i, j] += 1.0
        elif c.outcome == "b":
            wins[j, i] += 1.0
        else:
            wins[i, j] += 0.5
            wins[j, i] += 0.5
    return wins, wins + wins.T


def with_prior(wins: np.ndarray, prior_games: float) -> np.ndarray:
    """Add prior_games virtual games, half won by each side, to every compared pair."""
    if prior_games < 0:
        raise ValueError("prior_games cannot be negative")
    compared = (wins + wins.T) > 0
    return wins + compared * (prior_games / 2.0)


def finite_estimate_exists(wins: np.ndarray) -> bool:
    """Ford's condition: every version reaches every other through "won or tied against"."""
    count, _ = connected_components(wins > 0, directed=True, connection="strong")
    return count == 1


def fit_bradley_terry_matrix(
    wins: np.ndarray, *, tol: float = 1e-10, max_iter: int = 100_000
) -> tuple[np.ndarray, int]:
    """Centred log-strengths from a (versions, versions) matrix of (half-)wins, by MM."""
    k = wins.shape[0]
    if k < 2:
        raise ValueError("Bradley-Terry needs at least two versions")
    if not finite_estimate_exists(wins):
        raise NoFiniteEstimate(
            "some versions only won or only lost against the rest; add prior_games or reviews"
        )
    games = wins + wins.T  # (k, k), symmetric
    total_wins = wins.sum(axis=1)  # (k,)
    pi = np.ones(k)
    for iteration in range(1, max_iter + 1):
        # denominator[i] = sum_j games[i, j] / (pi_i + pi_j); the diagonal holds no games.
        denominator = (games / (pi[:, None] + pi[None, :])).sum(axis=1)
        new_pi = total_wins / denominator
        new_pi /= math.exp(np.log(new_pi).mean())  # keep the geometric mean at 1
        change = np.max(np.abs(np.log(new_pi) - np.log(pi)))
        pi = new_pi
        if change < tol:
            return np.log(pi), iteration
    raise RuntimeError(f"Bradley-Terry MM did not converge in {max_iter} iterations")


def fit_bradley_terry(
    comparisons: Iterable[Comparison],
    versions: Sequence[Hashable] | None = None,
    *,
    prior_games: float = 1.0,
) -> BradleyTerryFit:
    comparisons = list(comparisons)
    versions = list(versions) if versions is not None else compared_versions(comparisons)
    wins, _ = score_matrix(comparisons, versions)
    strengths, iterations = fit_bradley_terry_matrix(with_prior(wins, prior_games))
    return BradleyTerryFit(versions=versions, strengths=strengths, iterations=iterations)


def compared_versions(comparisons: Iterable[Comparison]) -> list[Hashable]:
    """Versions in order of first appearance."""
    seen: dict[Hashable, None] = {}
    for c in comparisons:
        seen.setdefault(c.a)
        seen.setdefault(c.b)
    return list(seen)


@dataclass(frozen=True)
class BootstrapIntervals:
    low: np.ndarray  # (versions,)
    high: np.ndarray  # (versions,)
    samples_used: int
    samples_dropped: int


def bootstrap_bradley_terry(
    comparisons: Sequence[Comparison],
    versions: Sequence[Hashable],
    *,
    prior_games: float = 1.0,
    samples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> BootstrapIntervals:
    """Percentile intervals of the centred strengths over resampled comparison sets."""
    rng = np.random.default_rng(seed)
    k = len(versions)
    index = {v: i for i, v in enumerate(versions)}
    # Cells: (i, j, outcome) with i < j; a resample of n comparisons is a multinomial draw.
    cells: dict[tuple[int, int, str], int] = {}
    for c in comparisons:
        i, j, outcome = index[c.a], index[c.b], c.outcome
        if i > j:
            i, j = j, i
            outcome = {"a": "b", "b": "a", "tie": "tie"}[outcome]
        cells[(i, j, outcome)] = cells.get((i, j, outcome), 0) + 1
    keys = list(cells)
    counts = np.array([cells[key] for key in keys], dtype=float)
    n = int(counts.sum())
    compared = np.zeros((k, k), dtype=bool)
    for i, j, _ in keys:
        compared[i, j] = compared[j, i] = True
    # The prior sits on the pairs compared in the data, so every resample keeps its structure.
    prior = compared * (prior_games / 2.0)
    # Each cell adds its count to one or (a tie) two entries of the wins matrix.
    cell_of, target, weight = [], [], []
    for cell, (i, j, outcome) in enumerate(keys):
        if outcome in ("a", "tie"):
            cell_of.append(cell)
            target.append(i * k + j)
            weight.append(1.0 if outcome == "a" else 0.5)
        if outcome in ("b", "tie"):
            cell_of.append(cell)
            target.append(j * k + i)
            weight.append(1.0 if outcome == "b" else 0.5)
    cell_of_arr, target_arr, weight_arr = np.array(cell_of), np.array(target), np.array(weight)
    draws = []
    dropped = 0
    for resample in rng.multinomial(n, counts / n, size=samples):  # resample: (cells,)
        contributions = resample[cell_of_arr] * weight_arr
        wins = prior + np.bincount(target_arr, contributions, minlength=k * k).reshape(k, k)
        try:
            strengths, _ = fit_bradley_terry_matrix(wins, tol=1e-8)
        except NoFiniteEstimate:
            dropped += 1
            continue
        draws.append(strengths)
    if not draws:
        raise NoFiniteEstimate("no bootstrap resample had a finite estimate; add prior_games")
    stacked = np.vstack(draws)  # (samples_used, versions)
    tail = (1.0 - confidence) / 2.0 * 100.0
    return BootstrapIntervals(
        low=np.percentile(stacked, tail, axis=0),
        high=np.percentile(stacked, 100.0 - tail, axis=0),
        samples_used=len(draws),
        samples_dropped=dropped,
    )


# ---------------------------------------------------------------------------------------------
# Leaderboard


def elo_rating(strength: float) -> float:
    """1000 + 400 * log10(pi): 400 points = 10:1 odds, as chess players read it."""
    return ELO_BASE + ELO_SCALE * strength


@dataclass(frozen=True)
class LeaderboardRow:
    rank: int
    version: Hashable
    strength: float
    """Centred log-strength (natural log); differences are log-odds of winning."""
    ci_low: float
    ci_high: float
    """Bootstrap percentile interval of strength."""
    rating: float
    rating_ci_low: float
    rating_ci_high: float
    wins: int
    losses: int
    ties: int

    @property
    def comparisons(self) -> int:
        return self.wins + self.losses + self.ties


def leaderboard(
    comparisons: Sequence[Comparison],
    *,
    prior_games: float = 1.0,
    bootstrap_samples: int = 1000,
    seed: int = 0,
) -> list[LeaderboardRow]:
    """Every compared version, strongest first, with 95% bootstrap intervals."""
    comparisons = list(comparisons)
    versions = compared_versions(comparisons)
    if len(versions) < 2:
        return []
    fit = fit_bradley_terry(comparisons, versions, prior_games=prior_games)
    intervals = bootstrap_bradley_terry(
        comparisons, versions, prior_games=prior_games, samples=bootstrap_samples, seed=seed
    )
    record = {v: [0, 0, 0] for v in versions}  # wins, losses, ties
    for c in comparisons:
        if c.outcome == "tie":
            record[c.a][2] += 1
            record[c.b][2] += 1
        else:
            winner, loser = (c.a, c.b) if c.outcome == "a" else (c.b, c.a)
            record[winner][0] += 1
            record[loser][1] += 1
    order = sorted(range(len(versions)), key=lambda i: -fit.strengths[i])
    rows = []
    for rank, i in enumerate(order, start=1):
        strength = float(fit.strengths[i])
        low, high = float(intervals.low[i]), float(intervals.high[i])
        wins, losses, ties = record[versions[i]]
        rows.append(
            LeaderboardRow(
                rank=rank,
                version=versions[i],
                strength=strength,
                ci_low=low,
                ci_high=high,
                rating=elo_rating(strength),
                rating_ci_low=elo_rating(low),
                rating_ci_high=elo_rating(high),
                wins=wins,
                losses=losses,
                ties=ties,
            )
        )
    return rows


def rank_upper_bounds(rows: Sequence[LeaderboardRow]) -> list[int]:
    """Chatbot Arena's "Rank (UB)": 1 + the number of versions whose interval lies wholly above
    this version's. Versions whose intervals overlap share a rank, so the column shows which
    orderings the reviews actually support."""
    return [1 + sum(other.ci_low > row.ci_high for other in rows) for row in rows]
