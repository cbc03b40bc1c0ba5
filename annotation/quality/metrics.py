"""Agreement and annotator-quality statistics: numpy and scipy only, no Django.

Every project-level figure is computed from a *sufficient statistic* that adds up over units
(a unit is what several annotators judged: a task's outcome, one rubric dimension of one
response...). A project's figures stay current by adding a unit's new contribution and
subtracting its old one, never by rereading every label, and a full recompute gives exactly the
same numbers because the statistics are integers:

- ``AgreementStats`` keeps, per unit size m (number of values in the unit), the number of units,
  the value totals and the integer *pair matrix* Σ_u (c_u c_uᵀ - diag c_u). Krippendorff's
  coincidence matrix is Σ_m pairs_m / (m - 1) (Krippendorff 2011, "Computing Krippendorff's
  alpha-reliability", o_ck), and Fleiss' κ needs only the traces and totals.
- ``AnnotatorCounters`` keeps one annotator's counts (labels, skips, left choices, gold hits,
  a duration histogram...), from which ``annotator_summary`` derives the per-annotator table.
- Cohen's κ needs one confusion matrix per annotator pair; Kendall's W and τ are per ranking
  task (few items), so their sums and counts are what is accumulated.

Values are indices into an ordered value domain (``values``): for ordinal data the order is the
scale's order, for interval data the values are the numbers themselves.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
from scipy.stats import binom, binomtest

NOMINAL = "nominal"
ORDINAL = "ordinal"
INTERVAL = "interval"
LEVELS = (NOMINAL, ORDINAL, INTERVAL)


# --------------------------------------------------------------------------------------------
# Krippendorff's alpha and Fleiss' kappa from additive unit statistics
# --------------------------------------------------------------------------------------------


def unit_counts(unit_values: Iterable, values: Sequence) -> np.ndarray:
    """How often each value of ``values`` occurs among one unit's labels (None = missing)."""
    index = {v: i for i, v in enumerate(values)}
    counts = np.zeros(len(values), dtype=np.int64)
    for v in unit_values:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        counts[index[v]] += 1
    return counts


def _check_values(values: Sequence) -> tuple:
    values = tuple(values)
    if len(set(values)) != len(values):
        raise ValueError("the value domain lists a value twice")
    return values


@dataclass
class AgreementStats:
    """Additive statistics of many units over one value domain (see the module docstring).

    ``by_size[m] = (units, totals (V,), pairs (V, V))`` for units holding m ≥ 2 values; units
    with fewer than two values carry no information about agreement and are not kept.
    """

    values: tuple
    by_size: dict[int, tuple[int, np.ndarray, np.ndarray]] = field(default_factory=dict)

    def __post_init__(self):
        self.values = _check_values(self.values)

    # -- building ------------------------------------------------------------------------
    def add_unit(self, counts: Sequence[int] | np.ndarray, sign: int = 1) -> None:
        """Add (sign=1) or remove (sign=-1) one unit given its value counts, shape (V,)."""
        c = np.asarray(counts, dtype=np.int64)
        if c.shape != (len(self.values),):
            raise ValueError(f"counts must have shape ({len(self.values)},), not {c.shape}")
        m = int(c.sum())
        if m < 2:
            return
        units, totals, pairs = self.by_size.get(m) or (
            0,
            np.zeros(len(self.values), dtype=np.int64),
            np.zeros((len(self.values), len(self.values)), dtype=np.int64),
        )
        units += sign
        totals = totals + sign * c
        pairs = pairs + sign * (np.outer(c, c) - np.diag(c))
        if units < 0 or (totals < 0).any():
            raise ValueError("removed a unit that was never added")
        if units == 0:
            self.by_size.pop(m, None)
        else:
            self.by_size[m] = (units, totals, pairs)

    @classmethod
    def from_counts(cls, counts: np.ndarray, values: Sequence) -> AgreementStats:
        """From a (units, V) matrix of value counts."""
        stats = cls(values=tuple(values))
        counts = np.asarray(counts, dtype=np.int64).reshape(-1, len(stats.values))
        sizes = counts.sum(axis=1)
        for m in np.unique(sizes[sizes >= 2]):
            block = counts[sizes == m]
            pairs = block.T @ block - np.diag(block.sum(axis=0))
            stats.by_size[int(m)] = (len(block), block.sum(axis=0), pairs)
        return stats

    @classmethod
    def from_units(cls, units: Iterable[Iterable], values: Sequence) -> AgreementStats:
        """From each unit's raw values (None or NaN = missing)."""
        values = _check_values(values)
        rows = [unit_counts(u, values) for u in units]
        counts = np.array(rows, dtype=np.int64).reshape(-1, len(values))
        return cls.from_counts(counts, values)

    def merged(self, other: AgreementStats, sign: int = 1) -> AgreementStats:
        if other.values != self.values:
            raise ValueError("cannot combine statistics over different value domains")
        out = AgreementStats(values=self.values, by_size=dict(self.by_size))
        for m, (units, totals, pairs) in other.by_size.items():
            u0, t0, p0 = out.by_size.get(m) or (0, 0, 0)
            u = u0 + sign * units
            if u < 0:
                raise ValueError("subtracted statistics that were never added")
            if u == 0:
                out.by_size.pop(m, None)
            else:
                out.by_size[m] = (u, t0 + sign * totals, p0 + sign * pairs)
        return out

    def __add__(self, other: AgreementStats) -> AgreementStats:
        return self.merged(other, 1)

    def __sub__(self, other: AgreementStats) -> AgreementStats:
        return self.merged(other, -1)

    def __eq__(self, other) -> bool:
        if not isinstance(other, AgreementStats) or other.values != self.values:
            return False
        if self.by_size.keys() != other.by_size.keys():
            return False
        return all(
            self.by_size[m][0] == other.by_size[m][0]
            and np.array_equal(self.by_size[m][1], other.by_size[m][1])
            and np.array_equal(self.by_size[m][2], other.by_size[m][2])
            for m in self.by_size
        )

    # -- serialisation (JSON-friendly, exact) --------------------------------------------
    def to_dict(self) -> dict:
        return {
            "values": list(self.values),
            "by_size": {
                str(m): {"units": int(u), "totals": t.tolist(), "pairs": p.tolist()}
                for m, (u, t, p) in sorted(self.by_size.items())
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> AgreementStats:
        return cls(
            values=tuple(data["values"]),
            by_size={
                int(m): (
                    int(d["units"]),
                    np.asarray(d["totals"], dtype=np.int64),
                    np.asarray(d["pairs"], dtype=np.int64),
                )
                for m, d in data.get("by_size", {}).items()
            },
        )

    # -- derived figures ------------------------------------------------------------------
    @property
    def units(self) -> int:
        """Pairable units (those with at least two values)."""
        return sum(u for u, _, _ in self.by_size.values())

    @property
    def pairable_values(self) -> int:
        """n in Krippendorff's notation: the values that sit in pairable units."""
        return int(sum(m * u for m, (u, _, _) in self.by_size.items()))

    def coincidence(self) -> np.ndarray:
        """Krippendorff's coincidence matrix o_ck, shape (V, V)."""
        out = np.zeros((len(self.values), len(self.values)))
        for m, (_, _, pairs) in self.by_size.items():
            out += pairs / (m - 1)
        return out

    def observed_agreement(self) -> float | None:
        """Share of ordered pairs of values within a unit that agree (pairwise % agreement)."""
        total = sum(u * m * (m - 1) for m, (u, _, _) in self.by_size.items())
        if not total:
            return None
        return float(sum(np.trace(p) for _, _, p in self.by_size.values()) / total)

    def alpha(self, level: str = NOMINAL) -> float | None:
        return alpha_from_coincidence(self.coincidence(), level=level, values=self.values)

    def fleiss_kappa(self) -> float | None:
        """Fleiss' κ; units may hold different numbers of values (see ``fleiss_kappa``)."""
        units = self.units
        if not units:
            return None
        # Each unit's observed agreement is trace(c cᵀ - diag c) / (m (m - 1)); each unit's
        # category shares are c / m. Both sum over units by size.
        sum_agreement = sum(np.trace(p) / (m * (m - 1)) for m, (_, _, p) in self.by_size.items())
        sum_shares = sum(t / m for m, (_, t, _) in self.by_size.items())
        p_bar = sum_agreement / units
        p_expected = float(np.sum((sum_shares / units) ** 2))
        if math.isclose(p_expected, 1.0):
            return None
        return float((p_bar - p_expected) / (1 - p_expected))


def squared_distances(level: str, values: Sequence, marginals: np.ndarray) -> np.ndarray:
    """δ²_ck for Krippendorff's alpha, shape (V, V).

    Ordinal: (Σ_{g between c and k} n_g - (n_c + n_k) / 2)², with n_g the coincidence marginals,
    so a step between two often-used values counts for more than a step over a rare one.
    """
    size = len(values)
    if level == NOMINAL:
        return 1.0 - np.eye(size)
    if level == INTERVAL:
        v = np.asarray(values, dtype=float)
        return (v[:, None] - v[None, :]) ** 2
    if level == ORDINAL:
        n = np.asarray(marginals, dtype=float)
        cum = np.concatenate(([0.0], np.cumsum(n)))
        i, k = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
        lo, hi = np.minimum(i, k), np.maximum(i, k)
        between = cum[hi + 1] - cum[lo]
        return (between - (n[i] + n[k]) / 2) ** 2
    raise ValueError(f"level must be one of {LEVELS}, not {level!r}")


def alpha_from_coincidence(
    coincidence: np.ndarray, *, level: str = NOMINAL, values: Sequence | None = None
) -> float | None:
    """alpha = 1 - D_o / D_e; None when undefined (under two pairable values, or one value only)."""
    o = np.asarray(coincidence, dtype=float)
    if values is None:
        values = range(len(o))
    n_c = o.sum(axis=1)
    n = n_c.sum()
    if n < 2:
        return None
    delta = squared_distances(level, list(values), n_c)
    disagreement_observed = float(np.sum(o * delta))
    disagreement_expected = float(n_c @ delta @ n_c) / (n - 1)
    if disagreement_expected <= 0:
        return None
    return 1.0 - disagreement_observed / disagreement_expected


def krippendorff_alpha(
    reliability_data, *, level: str = NOMINAL, values: Sequence | None = None
) -> float | None:
    """Krippendorff's alpha of a (coders, units) matrix; None or NaN marks a missing value.

    ``values`` is the ordered value domain; by default the sorted observed values. Returns None
    when alpha is undefined: a single coder, no unit with two values, or one value observed only.
    """
    rows = [list(r) for r in reliability_data]
    if values is None:
        seen = {
            v
            for r in rows
            for v in r
            if v is not None and not (isinstance(v, float) and math.isnan(v))
        }
        values = sorted(seen)
    units = zip(*rows, strict=True) if rows else []
    return AgreementStats.from_units(units, values).alpha(level)


def fleiss_kappa(counts: np.ndarray) -> float | None:
    """Fleiss' κ of a (units, categories) count table.

    With the same number of ratings per unit this is Fleiss (1971). With varying numbers, each
    unit's agreement and category shares use its own count, and units with fewer than two
    ratings are left out (the generalisation in Gwet 2014, §2.4, restricted to pairable units).
    """
    counts = np.asarray(counts, dtype=np.int64)
    return AgreementStats.from_counts(counts, range(counts.shape[1])).fleiss_kappa()


# --------------------------------------------------------------------------------------------
# Cohen's kappa between pairs of annotators
# --------------------------------------------------------------------------------------------


def confusion_matrix(first: Sequence, second: Sequence, values: Sequence) -> np.ndarray:
    """(V, V) counts: rows are the first annotator's values, columns the second's."""
    index = {v: i for i, v in enumerate(values)}
    out = np.zeros((len(values), len(values)), dtype=np.int64)
    for a, b in zip(first, second, strict=True):
        out[index[a], index[b]] += 1
    return out


def cohen_kappa(confusion: np.ndarray) -> float | None:
    """κ = (p_o - p_e) / (1 - p_e); None when undefined (no shared units, or p_e = 1)."""
    c = np.asarray(confusion, dtype=float)
    n = c.sum()
    if n == 0:
        return None
    p_observed = np.trace(c) / n
    p_expected = float(c.sum(axis=1) @ c.sum(axis=0)) / n**2
    if math.isclose(p_expected, 1.0):
        return None
    return float((p_observed - p_expected) / (1 - p_expected))


@dataclass(frozen=True)
class PairAgreement:
    first: Hashable
    second: Hashable
    shared_units: int
    kappa: float | None


def pairwise_cohen_kappa(
    ratings: Mapping[Hashable, Mapping[Hashable, Hashable]], values: Sequence
) -> list[PairAgreement]:
    """Cohen's κ for every pair of annotators over the units both labelled.

    ``ratings[annotator][unit] = value``. Pairs are ordered by the annotators' sort order.
    """
    out = []
    for a, b in combinations(sorted(ratings), 2):
        shared = sorted(set(ratings[a]) & set(ratings[b]), key=repr)
        matrix = confusion_matrix(
            [ratings[a][u] for u in shared], [ratings[b][u] for u in shared], values
        )
        out.append(PairAgreement(a, b, len(shared), cohen_kappa(matrix) if shared else None))
    return out


# --------------------------------------------------------------------------------------------
# Rankings: Kendall's W across annotators, Kendall's tau against the consensus
# --------------------------------------------------------------------------------------------


def tiers_to_ranks(tiers: Sequence[Sequence[Hashable]], items: Sequence[Hashable]) -> np.ndarray:
    """Mid-ranks (1 = best) of ``items`` from a best-first list of tiers; a tier holds ties."""
    rank_of = {}
    placed = 0
    for tier in tiers:
        mid = placed + (len(tier) + 1) / 2
        for item in tier:
            rank_of[item] = mid
        placed += len(tier)
    return np.array([rank_of[i] for i in items], dtype=float)


def _tie_term(ranks: np.ndarray) -> float:
    _, sizes = np.unique(ranks, return_counts=True)
    return float(np.sum(sizes**3 - sizes))


def kendall_w(ranks: np.ndarray) -> float | None:
    """Kendall's coefficient of concordance of a (raters, items) matrix of (mid-)ranks.

    W = 12 S / (m² (n³ - n) - m Σ_j T_j), with S the squared deviations of the items' rank sums
    from their mean and T_j = Σ (t³ - t) over rater j's groups of tied items (Kendall & Gibbons
    1990, eq. 6.7). None when undefined: under two raters or items, or every rater ties all.
    """
    r = np.asarray(ranks, dtype=float)
    if r.ndim != 2:
        raise ValueError("ranks must be a (raters, items) matrix")
    m, n = r.shape
    if m < 2 or n < 2:
        return None
    rank_sums = r.sum(axis=0)
    s = float(np.sum((rank_sums - rank_sums.mean()) ** 2))
    denominator = m**2 * (n**3 - n) - m * sum(_tie_term(row) for row in r)
    if denominator <= 0:
        return None
    return 12 * s / denominator


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Kendall's τ-b (ties in either ranking accounted for); None when undefined.

    O(n²): ranking tasks hold a handful of responses.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = len(x)
    if n != len(y):
        raise ValueError("x and y must have the same length")
    if n < 2:
        return None
    i, j = np.triu_indices(n, k=1)
    dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
    pairs = len(i)
    denominator = math.sqrt((pairs - np.sum(dx == 0)) * (pairs - np.sum(dy == 0)))
    if denominator == 0:
        return None
    return float(np.sum(dx * dy) / denominator)


def consensus_tau(ranks_by_annotator: Mapping[Hashable, Sequence[float]]) -> dict:
    """Kendall's τ-b between each annotator's ranks and the mean ranks of the *other* annotators.

    Leave-one-out, so an annotator is not compared with a consensus they make up themselves
    (with two annotators a plain consensus would inflate both τ towards 1). None for annotators
    alone on the task or where τ is undefined.
    """
    names = list(ranks_by_annotator)
    matrix = np.array([ranks_by_annotator[a] for a in names], dtype=float)
    out = {}
    for row, name in enumerate(names):
        if len(names) < 2:
            out[name] = None
            continue
        others = np.delete(matrix, row, axis=0).mean(axis=0)
        out[name] = kendall_tau(matrix[row], others)
    return out


# --------------------------------------------------------------------------------------------
# Position bias
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PositionBias:
    left: int
    decided: int
    share_left: float | None
    p_value: float | None  # two-sided binomial test against 0.5
    p_adjusted: float | None  # Holm-adjusted across the annotators tested together
    flagged: bool


def position_bias_test(left: int, right: int) -> float | None:
    """Two-sided exact binomial test of ``left`` successes in ``left + right`` against 0.5."""
    n = left + right
    if n == 0:
        return None
    return float(binomtest(left, n, 0.5, alternative="two-sided").pvalue)


def position_bias_tests(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """``position_bias_test`` for many annotators at once (NaN where nothing was decided).

    Against 0.5 the binomial distribution is symmetric, so the two-sided exact p-value of
    scipy.stats.binomtest (outcomes no likelier than the observed one) is twice the smaller
    tail, capped at 1. One vectorised call instead of a search per annotator: a report over
    hundreds of annotators stays in milliseconds.
    """
    left = np.asarray(left, dtype=np.int64)
    n = left + np.asarray(right, dtype=np.int64)
    lower = binom.cdf(left, n, 0.5)
    upper = binom.sf(left - 1, n, 0.5)
    p = np.minimum(1.0, 2 * np.minimum(lower, upper))
    return np.where(n > 0, p, np.nan)


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone), same order as given."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p)
    m = len(p)
    adjusted = np.empty(m)
    running = 0.0
    for rank, idx in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[idx]))
        adjusted[idx] = running
    return adjusted.tolist()


def position_bias(
    left_right: Mapping[Hashable, tuple[int, int]], *, alpha: float = 0.01
) -> dict[Hashable, PositionBias]:
    """Per annotator: share of left choices and whether it departs from 0.5 at level ``alpha``.

    The sides are randomised per annotator, so a real preference for one response cannot
    explain a skew. Many annotators are tested at once, so the flag uses Holm-adjusted p-values
    (family-wise error ≤ alpha): a dashboard of 200 honest annotators would otherwise show two.
    """
    names_all = list(left_right)
    p_values = position_bias_tests(
        np.array([left_right[a][0] for a in names_all], dtype=np.int64),
        np.array([left_right[a][1] for a in names_all], dtype=np.int64),
    )
    tested = {
        a: None if math.isnan(p) else float(p)
        for a, p in zip(names_all, p_values.tolist(), strict=True)
    }
    names = [a for a, p in tested.items() if p is not None]
    adjusted = dict(zip(names, holm_adjust([tested[a] for a in names]), strict=True))
    out = {}
    for a, (left, right) in left_right.items():
        decided = left + right
        p_adj = adjusted.get(a)
        out[a] = PositionBias(
            left=left,
            decided=decided,
            share_left=left / decided if decided else None,
            p_value=tested[a],
            p_adjusted=p_adj,
            flagged=p_adj is not None and p_adj < alpha,
        )
    return out


# --------------------------------------------------------------------------------------------
# Per-annotator statistics
# --------------------------------------------------------------------------------------------

# Bin edges of the time-per-task histogram, in seconds; the last bin is open-ended. Narrow where
# decisions are too quick to have read both responses, wide where reading time no longer says
# much. Adjacent edges differ by at most a third, so a median read off the bins is close.
DURATION_EDGES_S = (
    0, 0.5, 1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60,
    75, 90, 120, 150, 180, 240, 300, 420, 600, 900, 1200, 1800, 3600,
)  # fmt: skip
DURATION_BINS = len(DURATION_EDGES_S)  # the last bin holds everything from 3600 s on


def duration_bin(duration_ms: float) -> int:
    """Index of the histogram bin holding a duration given in milliseconds."""
    seconds = max(0.0, duration_ms / 1000)
    return int(np.searchsorted(DURATION_EDGES_S, seconds, side="right")) - 1


def duration_histogram(durations_ms: Iterable[float | None]) -> np.ndarray:
    counts = np.zeros(DURATION_BINS, dtype=np.int64)
    for d in durations_ms:
        if d is not None:
            counts[duration_bin(d)] += 1
    return counts


def histogram_quantile(counts: Sequence[int], q: float) -> float | None:
    """The q-quantile in seconds, interpolating linearly within the bin that holds it."""
    c = np.asarray(counts, dtype=float)
    total = c.sum()
    if total == 0:
        return None
    target = q * total
    cum = np.cumsum(c)
    b = int(np.searchsorted(cum, target, side="left"))
    lo = DURATION_EDGES_S[b]
    if b + 1 >= len(DURATION_EDGES_S):
        return float(lo)  # open-ended last bin: its lower edge is all that is known
    hi = DURATION_EDGES_S[b + 1]
    before = cum[b - 1] if b > 0 else 0.0
    fraction = (target - before) / c[b] if c[b] else 0.0
    return float(lo + fraction * (hi - lo))


def share_faster_than(counts: Sequence[int], seconds: float) -> float | None:
    """Share of durations under ``seconds``, which must be a bin edge to be exact."""
    if seconds not in DURATION_EDGES_S:
        raise ValueError(f"the fast threshold must be one of {DURATION_EDGES_S}")
    c = np.asarray(counts)
    total = c.sum()
    if total == 0:
        return None
    return float(c[: DURATION_EDGES_S.index(seconds)].sum() / total)


_COUNTER_FIELDS = (
    "labels",  # labels given
    "skips",  # tasks skipped
    "flagged_labels",  # labels carrying at least one content flag (unsafe, personal data...)
    "left",  # pairwise decisions for the response shown on the left
    "right",  # ... and on the right (ties and both-bad are not decisions)
    "consensus_agree",  # labels equal to the leave-one-out plurality of the other labels
    "consensus_compared",  # labels on tasks whose other labels had a unique plurality
    "gold_correct",  # gold tasks answered as expected
    "gold_answered",  # gold tasks answered
    "tau_sum_micro",  # Σ Kendall τ against the consensus, in millionths (kept integral)
    "tau_tasks",  # ranking tasks where that τ was defined
)


@dataclass
class AnnotatorCounters:
    """Additive counts of one annotator's work; the cache row of the per-annotator table."""

    labels: int = 0
    skips: int = 0
    flagged_labels: int = 0
    left: int = 0
    right: int = 0
    consensus_agree: int = 0
    consensus_compared: int = 0
    gold_correct: int = 0
    gold_answered: int = 0
    tau_sum_micro: int = 0
    tau_tasks: int = 0
    durations: np.ndarray = field(default_factory=lambda: np.zeros(DURATION_BINS, np.int64))

    def merged(self, other: AnnotatorCounters, sign: int = 1) -> AnnotatorCounters:
        kwargs = {f: getattr(self, f) + sign * getattr(other, f) for f in _COUNTER_FIELDS}
        return AnnotatorCounters(**kwargs, durations=self.durations + sign * other.durations)

    def __add__(self, other: AnnotatorCounters) -> AnnotatorCounters:
        return self.merged(other, 1)

    def __sub__(self, other: AnnotatorCounters) -> AnnotatorCounters:
        return self.merged(other, -1)

    def __eq__(self, other) -> bool:
        return (
            isinstance(other, AnnotatorCounters)
            and all(getattr(self, f) == getattr(other, f) for f in _COUNTER_FIELDS)
            and np.array_equal(self.durations, other.durations)
        )

    def is_zero(self) -> bool:
        return all(getattr(self, f) == 0 for f in _COUNTER_FIELDS) and not self.durations.any()

    def to_dict(self) -> dict:
        out = {f: int(getattr(self, f)) for f in _COUNTER_FIELDS}
        out["durations"] = self.durations.tolist()
        return out

    @classmethod
    def from_dict(cls, data: Mapping) -> AnnotatorCounters:
        durations = np.zeros(DURATION_BINS, np.int64)
        stored = data.get("durations") or []
        if isinstance(stored, Mapping):  # sparse {"bin": count}, as the caches keep it
            for b, n in stored.items():
                durations[int(b)] = n
        else:
            durations[: len(stored)] = np.asarray(stored, dtype=np.int64)
        return cls(**{f: int(data.get(f, 0)) for f in _COUNTER_FIELDS}, durations=durations)


@dataclass(frozen=True)
class AnnotatorSummary:
    labels: int
    skip_rate: float | None
    flag_rate: float | None
    consensus_agreement: float | None
    consensus_compared: int
    gold_accuracy: float | None
    gold_answered: int
    median_seconds: float | None  # read off the duration histogram
    fast_share: float | None  # share of decisions faster than the project's threshold
    share_left: float | None
    consensus_tau: float | None  # mean Kendall τ against the consensus, ranking tasks only


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def annotator_summary(counters: AnnotatorCounters, *, fast_seconds: float = 3) -> AnnotatorSummary:
    c = counters
    return AnnotatorSummary(
        labels=c.labels,
        skip_rate=_ratio(c.skips, c.labels + c.skips),
        flag_rate=_ratio(c.flagged_labels, c.labels),
        consensus_agreement=_ratio(c.consensus_agree, c.consensus_compared),
        consensus_compared=c.consensus_compared,
        gold_accuracy=_ratio(c.gold_correct, c.gold_answered),
        gold_answered=c.gold_answered,
        median_seconds=histogram_quantile(c.durations, 0.5),
        fast_share=share_faster_than(c.durations, fast_seconds),
        share_left=_ratio(c.left, c.left + c.right),
        consensus_tau=_ratio(c.tau_sum_micro / 1e6, c.tau_tasks),
    )


def leave_one_out_plurality(counts: np.ndarray, own: int) -> int | None:
    """The plurality value of a unit's *other* labels, or None without a unique one."""
    others = np.asarray(counts, dtype=np.int64).copy()
    others[own] -= 1
    if others.sum() == 0:
        return None
    top = others.max()
    winners = np.flatnonzero(others == top)
    return int(winners[0]) if len(winners) == 1 else None
