"""Win rate and Bradley-Terry: hand-computed values and an independent scipy fit."""

import math

import numpy as np
import pytest
from scipy.optimize import minimize

from models_registry.stats import (
    Comparison,
    LeaderboardRow,
    NoFiniteEstimate,
    bootstrap_bradley_terry,
    elo_rating,
    fit_bradley_terry,
    head_to_head,
    leaderboard,
    rank_upper_bounds,
    score_matrix,
    wilson_interval,
    win_rate,
)


def games(a, b, a_wins=0, b_wins=0, ties=0):
    return (
        [Comparison(a, b, "a")] * a_wins
        + [Comparison(b, a, "a")] * b_wins
        + [Comparison(a, b, "tie")] * ties
    )


def scipy_bradley_terry(comparisons, versions, prior_games=0.0):
    """Independent fit: minimise the negative log-likelihood over theta with BFGS.

    Ties enter as half a win for each side; prior games as that many half-won games per
    compared pair, exactly as documented in models_registry.stats.
    """
    index = {v: i for i, v in enumerate(versions)}
    outcomes = []  # (winner index, loser index, weight)
    pairs = set()
    for c in comparisons:
        i, j = index[c.a], index[c.b]
        pairs.add((min(i, j), max(i, j)))
        if c.outcome == "a":
            outcomes.append((i, j, 1.0))
        elif c.outcome == "b":
            outcomes.append((j, i, 1.0))
        else:
            outcomes += [(i, j, 0.5), (j, i, 0.5)]
    for i, j in pairs:
        outcomes += [(i, j, prior_games / 2), (j, i, prior_games / 2)]

    def negative_log_likelihood(free):
        theta = np.concatenate([[0.0], free])  # the first version pinned at 0
        return sum(w * np.logaddexp(0.0, theta[lo] - theta[wi]) for wi, lo, w in outcomes)

    result = minimize(
        negative_log_likelihood, np.zeros(len(versions) - 1), method="BFGS", options={"gtol": 1e-10}
    )
    theta = np.concatenate([[0.0], result.x])
    return theta - theta.mean()


# --- win rate -------------------------------------------------------------------------------


def test_wilson_interval_of_seven_out_of_ten_by_hand():
    # p = 0.7, n = 10, z^2 = 3.841459: centre = (0.7 + 0.192073) / 1.384146 = 0.644493,
    # half-width = 1.959964 / 1.384146 * sqrt(0.021 + 0.0096036) = 0.247715
    low, high = wilson_interval(0.7, 10)
    assert low == pytest.approx(0.39677, abs=1e-5)
    assert high == pytest.approx(0.89221, abs=1e-5)


def test_ties_count_as_half_a_win_and_are_reported_separately():
    # given 7 wins, 3 losses and 2 ties for the candidate
    result = win_rate(7, 3, 2)

    # then the win rate is (7 + 1) / 12 and the interval is Wilson's at p = 2/3, n = 12:
    # centre = (0.666667 + 0.160066) / 1.320131 = 0.626253,
    # half-width = 1.959964 / 1.320131 * sqrt(0.0185185 + 0.0066694) = 0.235623
    assert result.win_rate == pytest.approx(2 / 3)
    assert (result.wins, result.losses, result.ties, result.comparisons) == (7, 3, 2, 12)
    assert result.tie_rate == pytest.approx(1 / 6)
    assert result.decisive_win_rate == pytest.approx(0.7)
    assert result.ci_low == pytest.approx(0.626253 - 0.235623, abs=1e-5)
    assert result.ci_high == pytest.approx(0.626253 + 0.235623, abs=1e-5)
    assert not result.significantly_better


def test_all_ties_is_an_even_match_without_a_decisive_rate():
    result = win_rate(0, 0, 5)
    assert result.win_rate == 0.5
    assert result.decisive_win_rate is None
    assert result.ci_low < 0.5 < result.ci_high


def test_the_interval_stays_inside_zero_and_one():
    assert win_rate(20, 0, 0).ci_high == 1.0
    assert win_rate(20, 0, 0).ci_low == pytest.approx(0.83887, abs=1e-5)  # 20/(20+z^2)
    assert win_rate(0, 20, 0).ci_low == 0.0


def test_a_clear_winner_is_significantly_better():
    assert win_rate(40, 10, 10).significantly_better


def test_no_comparisons_has_no_win_rate():
    with pytest.raises(ValueError, match="no comparisons"):
        win_rate(0, 0, 0)


def test_head_to_head_reads_sides_from_either_position():
    # given comparisons with the candidate shown on both sides, and one unrelated pair
    comparisons = [
        Comparison("cand", "champ", "a"),
        Comparison("champ", "cand", "b"),
        Comparison("champ", "cand", "a"),
        Comparison("cand", "champ", "tie"),
        Comparison("other", "champ", "a"),
    ]
    # then the candidate won two, lost one, tied one
    result = head_to_head(comparisons, "cand", "champ")
    assert (result.wins, result.losses, result.ties) == (2, 1, 1)


# --- Bradley-Terry --------------------------------------------------------------------------


def test_two_versions_strength_ratio_is_their_half_win_ratio():
    # given A beat B 7 times, lost 3 and tied 2: A scores 8, B scores 4
    comparisons = games("A", "B", a_wins=7, b_wins=3, ties=2)

    # when fitted without a prior
    fit = fit_bradley_terry(comparisons, prior_games=0)

    # then pi_A / pi_B = 2, centred: theta = +-ln(2) / 2, and P(A beats B) equals the win rate
    assert fit.strength("A") == pytest.approx(math.log(2) / 2, abs=1e-9)
    assert fit.strength("B") == pytest.approx(-math.log(2) / 2, abs=1e-9)
    assert fit.probability("A", "B") == pytest.approx(head_to_head(comparisons, "A", "B").win_rate)


def test_data_exactly_proportional_to_strengths_4_2_1_recovers_them():
    # given A:B 2:1, B:C 2:1, A:C 4:1 (exactly the expected counts for pi = 4, 2, 1)
    comparisons = (
        games("A", "B", a_wins=2, b_wins=1)
        + games("B", "C", a_wins=2, b_wins=1)
        + games("A", "C", a_wins=4, b_wins=1)
    )
    fit = fit_bradley_terry(comparisons, ["A", "B", "C"], prior_games=0)
    # log(4, 2, 1) centred on its mean log(2)
    assert fit.strengths == pytest.approx([math.log(2), 0.0, -math.log(2)], abs=1e-9)


def test_a_rock_paper_scissors_cycle_gives_equal_strengths():
    comparisons = (
        games("A", "B", a_wins=2, b_wins=1)
        + games("B", "C", a_wins=2, b_wins=1)
        + games("C", "A", a_wins=2, b_wins=1)
    )
    fit = fit_bradley_terry(comparisons, prior_games=0)
    assert fit.strengths == pytest.approx([0.0, 0.0, 0.0], abs=1e-9)


@pytest.mark.parametrize("prior_games", [0.0, 1.0])
def test_mm_fit_agrees_with_an_independent_scipy_fit(prior_games):
    # given random reviews among five versions of different true strengths, with ties
    rng = np.random.default_rng(42)
    versions = ["v1", "v2", "v3", "v4", "v5"]
    true_theta = np.array([0.0, 0.4, -0.3, 1.0, 0.2])
    comparisons = []
    for _ in range(300):
        i, j = rng.choice(5, size=2, replace=False)
        p = 1 / (1 + math.exp(true_theta[j] - true_theta[i]))
        u = rng.random()
        outcome = "tie" if u < 0.15 else ("a" if rng.random() < p else "b")
        comparisons.append(Comparison(versions[i], versions[j], outcome))

    # when fitted by MM here and by BFGS on the log-likelihood in the test
    fit = fit_bradley_terry(comparisons, versions, prior_games=prior_games)
    independent = scipy_bradley_terry(comparisons, versions, prior_games=prior_games)

    # then both find the same maximum
    assert fit.strengths == pytest.approx(independent, abs=1e-5)


def test_an_undefeated_version_needs_a_prior():
    # given B never won nor tied against A
    comparisons = games("A", "B", a_wins=5)

    # then there is no finite maximum-likelihood estimate without a prior
    with pytest.raises(NoFiniteEstimate):
        fit_bradley_terry(comparisons, prior_games=0)

    # and with one virtual tie, pi_A / pi_B = 5.5 / 0.5 = 11
    fit = fit_bradley_terry(comparisons, prior_games=1)
    assert fit.strength("A") - fit.strength("B") == pytest.approx(math.log(11), abs=1e-9)


def test_score_matrix_counts_ties_as_half_wins_both_ways():
    wins, total = score_matrix(games("A", "B", a_wins=2, b_wins=1, ties=1), ["A", "B"])
    assert wins.tolist() == [[0.0, 2.5], [1.5, 0.0]]
    assert total.tolist() == [[0.0, 4.0], [4.0, 0.0]]


def test_bootstrap_interval_contains_the_fit_and_narrows_with_more_data():
    # given the same 2:1 record with 30 and with 300 comparisons
    small = games("A", "B", a_wins=20, b_wins=10)
    large = games("A", "B", a_wins=200, b_wins=100)

    # when bootstrapped
    small_ci = bootstrap_bradley_terry(small, ["A", "B"], prior_games=0, samples=400, seed=1)
    large_ci = bootstrap_bradley_terry(large, ["A", "B"], prior_games=0, samples=400, seed=1)

    # then the fitted strength lies inside, the larger sample is tighter, and draws are seeded
    theta_a = math.log(2) / 2
    assert small_ci.low[0] < theta_a < small_ci.high[0]
    assert large_ci.low[0] < theta_a < large_ci.high[0]
    assert (large_ci.high[0] - large_ci.low[0]) < (small_ci.high[0] - small_ci.low[0]) / 2
    again = bootstrap_bradley_terry(small, ["A", "B"], prior_games=0, samples=400, seed=1)
    assert again.low.tolist() == small_ci.low.tolist()
    assert small_ci.samples_used + small_ci.samples_dropped == 400


def test_bootstrap_interval_for_two_versions_matches_the_binomial_quantiles():
    # given two versions, the fitted strength is a monotone function of A's share of wins, so
    # its percentile interval is that function at the binomial(30, 2/3) quantiles of A's wins
    from scipy.stats import binom

    comparisons = games("A", "B", a_wins=20, b_wins=10)
    ci = bootstrap_bradley_terry(comparisons, ["A", "B"], prior_games=0, samples=4000, seed=0)

    def centred_theta(a_wins):
        return math.log(a_wins / (30 - a_wins)) / 2

    assert ci.low[0] == pytest.approx(centred_theta(binom.ppf(0.025, 30, 2 / 3)), abs=0.06)
    assert ci.high[0] == pytest.approx(centred_theta(binom.ppf(0.975, 30, 2 / 3)), abs=0.06)


def test_leaderboard_orders_versions_and_carries_records_and_intervals():
    # given a champion, a better candidate and a worse one
    comparisons = (
        games("cand", "champ", a_wins=14, b_wins=4, ties=2)
        + games("champ", "old", a_wins=12, b_wins=6, ties=2)
        + games("cand", "old", a_wins=8, b_wins=1, ties=1)
    )

    # when the leaderboard is computed
    rows = leaderboard(comparisons, bootstrap_samples=300, seed=0)

    # then rows come strongest first with each version's own record and a bracketing interval
    assert [r.version for r in rows] == ["cand", "champ", "old"]
    assert [r.rank for r in rows] == [1, 2, 3]
    assert [(r.wins, r.losses, r.ties) for r in rows] == [(22, 5, 3), (16, 20, 4), (7, 20, 3)]
    fit = fit_bradley_terry(comparisons, ["cand", "champ", "old"])
    for row in rows:
        assert row.strength == pytest.approx(fit.strength(row.version))
        assert row.ci_low < row.strength < row.ci_high
        assert row.rating == pytest.approx(1000 + 400 * math.log10(math.exp(row.strength)))
    assert sum(r.strength for r in rows) == pytest.approx(0.0, abs=1e-9)


def test_elo_rating_scale():
    assert elo_rating(0.0) == 1000.0
    assert elo_rating(math.log(10)) == pytest.approx(1400.0)


def test_a_leaderboard_of_one_version_is_empty():
    assert leaderboard([]) == []


def test_a_comparison_with_itself_is_refused():
    with pytest.raises(ValueError, match="itself"):
        Comparison("A", "A", "a")


def _row(version, low, high):
    return LeaderboardRow(
        rank=0, version=version, strength=(low + high) / 2, ci_low=low, ci_high=high,
        rating=0.0, rating_ci_low=0.0, rating_ci_high=0.0, wins=0, losses=0, ties=0,
    )  # fmt: skip


def test_rank_upper_bound_counts_only_versions_whose_interval_lies_wholly_above():
    # given two leaders whose intervals overlap and a third clearly below both
    rows = [_row("a", 1.0, 2.0), _row("b", 0.5, 1.5), _row("c", -2.0, -1.2)]
    # then the leaders share rank 1 and the third is 3rd (two versions wholly above it)
    assert rank_upper_bounds(rows) == [1, 1, 3]
    # and an interval touching another's bound is not "wholly above"
    assert rank_upper_bounds([_row("a", 1.0, 2.0), _row("b", 0.0, 1.0)]) == [1, 1]


# ----------------------------------------------------------------------------- length control


def test_a_win_that_comes_only_from_length_is_an_even_match_once_length_is_controlled():
    from models_registry.stats import length_controlled_win_rate

    rng = np.random.default_rng(1)
    # the candidate writes longer on 80% of prompts, and the judge favours the longer answer
    # (an even match between answers of the same length)
    differences = np.where(rng.random(600) < 0.8, 1, -1) * rng.uniform(5, 60, 600)
    favour = 1 / (1 + np.exp(-4 * np.tanh(differences / differences.std())))
    outcomes = (rng.random(600) < favour).astype(float)
    assert outcomes.mean() > 0.7  # the raw win rate
    controlled = length_controlled_win_rate(outcomes, differences, bootstrap_samples=200)
    assert controlled.win_rate == pytest.approx(0.5, abs=0.08)
    assert controlled.ci_low < 0.5 < controlled.ci_high
    assert controlled.length_slope > 2


def test_a_win_that_does_not_follow_length_keeps_its_rate():
    from models_registry.stats import length_controlled_win_rate

    rng = np.random.default_rng(2)
    differences = rng.normal(-20, 15, 400)  # the candidate writes shorter
    outcomes = (rng.random(400) < 0.7).astype(float)  # and wins 70%, whatever the length
    controlled = length_controlled_win_rate(outcomes, differences, bootstrap_samples=200)
    assert controlled.win_rate == pytest.approx(0.7, abs=0.06)
    assert controlled.ci_low < controlled.win_rate < controlled.ci_high
    assert abs(controlled.length_slope) < 0.6


def test_ties_count_half_and_bad_input_is_refused():
    from models_registry.stats import length_controlled_win_rate

    even = length_controlled_win_rate([0.5] * 10, [3.0, -3.0] * 5, bootstrap_samples=50)
    assert even.win_rate == pytest.approx(0.5, abs=1e-6)
    with pytest.raises(ValueError, match="one length difference per outcome"):
        length_controlled_win_rate([1.0, 0.0], [1.0])
