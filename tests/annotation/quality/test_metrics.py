"""Agreement metrics checked against independent implementations and hand-made cases."""

import math

import krippendorff
import numpy as np
import pytest
from scipy.stats import friedmanchisquare, kendalltau, rankdata
from statsmodels.stats.inter_rater import fleiss_kappa as statsmodels_fleiss_kappa

from annotation.quality import metrics
from annotation.quality.metrics import (
    INTERVAL,
    LEVELS,
    NOMINAL,
    ORDINAL,
    AgreementStats,
    AnnotatorCounters,
)

nan = math.nan

# Krippendorff (2011), "Computing Krippendorff's alpha-reliability", the example with missing
# values: 3 coders, 15 units; published alpha: nominal 0.691, interval 0.811.
KRIPPENDORFF_EXAMPLE = [
    [nan, nan, nan, nan, nan, 3, 4, 1, 2, 1, 1, 3, 3, nan, 3],
    [1, nan, 2, 1, 3, 3, 4, 3, nan, nan, nan, nan, nan, nan, nan],
    [nan, nan, 2, 1, 3, 4, 4, nan, 2, 1, 1, 3, 3, nan, 4],
]


def _random_reliability_data(seed, coders=5, units=40, values=5, missing=0.3):
    rng = np.random.default_rng(seed)
    data = rng.integers(1, values + 1, size=(coders, units)).astype(float)
    data[rng.random(data.shape) < missing] = nan
    return data


# -- Krippendorff's alpha --------------------------------------------------------------------------


def test_alpha_matches_the_published_example():
    assert metrics.krippendorff_alpha(KRIPPENDORFF_EXAMPLE, level=NOMINAL) == pytest.approx(
        0.691, abs=5e-4
    )
    assert metrics.krippendorff_alpha(KRIPPENDORFF_EXAMPLE, level=INTERVAL) == pytest.approx(
        0.811, abs=5e-4
    )


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("seed", range(6))
def test_alpha_matches_the_krippendorff_package_with_missing_values(level, seed):
    data = _random_reliability_data(seed)
    domain = [1.0, 2.0, 3.0, 4.0, 5.0]

    ours = metrics.krippendorff_alpha(data, level=level, values=domain)

    theirs = krippendorff.alpha(data, level_of_measurement=level, value_domain=domain)
    assert ours == pytest.approx(theirs, abs=1e-12)


@pytest.mark.parametrize("level", LEVELS)
def test_alpha_matches_the_package_on_the_published_example(level):
    ours = metrics.krippendorff_alpha(KRIPPENDORFF_EXAMPLE, level=level)
    assert ours == pytest.approx(
        krippendorff.alpha(KRIPPENDORFF_EXAMPLE, level_of_measurement=level), abs=1e-12
    )


def test_alpha_is_one_for_perfect_agreement():
    data = [[1, 2, 3, 1, None], [1, 2, 3, 1, 2]]
    for level in LEVELS:
        assert metrics.krippendorff_alpha(data, level=level) == pytest.approx(1.0)


def test_alpha_is_undefined_for_a_single_annotator():
    assert metrics.krippendorff_alpha([[1, 2, 3, 2]], level=NOMINAL) is None


def test_alpha_is_undefined_when_no_unit_has_two_labels():
    data = [[1, None, 3], [None, 2, None]]
    assert metrics.krippendorff_alpha(data, level=NOMINAL) is None


def test_alpha_is_undefined_when_only_one_value_was_ever_given():
    assert metrics.krippendorff_alpha([[1, 1, 1], [1, 1, 1]], level=NOMINAL) is None


def test_alpha_of_units_split_evenly_is_below_zero():
    # given two annotators who disagree on every unit, each value used equally often
    data = [["A", "B", "A", "B"], ["B", "A", "B", "A"]]
    # then alpha = 1 - D_o/D_e with D_o = 1 and D_e = n/(2(n-1)) = 8/14
    assert metrics.krippendorff_alpha(data, level=NOMINAL) == pytest.approx(1 - 14 / 8)


def test_ordinal_alpha_counts_far_disagreements_more_than_near_ones():
    near = [[1, 2, 3, 4, 5, 1], [2, 2, 3, 4, 5, 1]]
    far = [[1, 2, 3, 4, 5, 1], [5, 2, 3, 4, 5, 1]]
    values = [1, 2, 3, 4, 5]
    near_alpha = metrics.krippendorff_alpha(near, level=ORDINAL, values=values)
    far_alpha = metrics.krippendorff_alpha(far, level=ORDINAL, values=values)
    assert near_alpha > far_alpha
    # while nominal alpha cannot tell them apart
    assert metrics.krippendorff_alpha(near, level=NOMINAL, values=values) == pytest.approx(
        metrics.krippendorff_alpha(far, level=NOMINAL, values=values), abs=0.05
    )


# -- sufficient statistics -------------------------------------------------------------------------


def test_stats_updated_unit_by_unit_equal_the_batch_computation():
    rng = np.random.default_rng(3)
    values = ("A", "B", "tie", "both_bad")
    counts = rng.multinomial(3, [0.5, 0.3, 0.15, 0.05], size=200)
    counts[::7] = rng.multinomial(2, [0.4, 0.4, 0.1, 0.1], size=len(counts[::7]))
    counts[::11] = rng.multinomial(1, [0.4, 0.4, 0.1, 0.1], size=len(counts[::11]))
    batch = AgreementStats.from_counts(counts, values)

    incremental = AgreementStats(values=values)
    for row in counts:
        incremental.add_unit(row)
    # a task relabelled: its old contribution leaves, its new one arrives
    incremental.add_unit(counts[5], sign=-1)
    incremental.add_unit([0, 0, 3, 0])
    incremental.add_unit([0, 0, 3, 0], sign=-1)
    incremental.add_unit(counts[5])

    assert incremental == batch
    assert AgreementStats.from_dict(incremental.to_dict()) == batch
    assert incremental.alpha(NOMINAL) == batch.alpha(NOMINAL)
    assert (batch - batch).units == 0
    assert (batch + batch).coincidence() == pytest.approx(2 * batch.coincidence())


def test_removing_a_unit_never_added_is_refused():
    stats = AgreementStats(values=("A", "B"))
    stats.add_unit([1, 1])
    with pytest.raises(ValueError, match="never added"):
        stats.add_unit([2, 0], sign=-1)
    assert stats.units == 1


def test_observed_agreement_is_the_share_of_agreeing_pairs():
    # units: (A, A, B): 2 of 6 ordered pairs agree; (A, A): 2 of 2
    stats = AgreementStats.from_units([["A", "A", "B"], ["A", "A"]], ("A", "B"))
    assert stats.observed_agreement() == pytest.approx(4 / 8)


# -- Fleiss' kappa ---------------------------------------------------------------------------------


def test_fleiss_kappa_matches_the_published_example():
    # Fleiss (1971) as tabulated on Wikipedia: 10 subjects, 14 raters, 5 categories, κ = 0.210
    table = [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
    assert metrics.fleiss_kappa(table) == pytest.approx(0.210, abs=5e-4)
    assert metrics.fleiss_kappa(table) == pytest.approx(statsmodels_fleiss_kappa(table))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("raters", [2, 3, 5])
def test_fleiss_kappa_matches_statsmodels(seed, raters):
    rng = np.random.default_rng(seed)
    table = rng.multinomial(raters, [0.45, 0.35, 0.15, 0.05], size=60)
    assert metrics.fleiss_kappa(table) == pytest.approx(statsmodels_fleiss_kappa(table), abs=1e-12)


def test_fleiss_kappa_with_varying_numbers_of_ratings_by_hand():
    # units: (2 A), (1 A, 1 B), (2 A, 1 B), and (1 B) which carries no pair and is left out
    table = [[2, 0], [1, 1], [2, 1], [0, 1]]
    p_units = [1.0, 0.0, (4 + 1 - 3) / 6]
    shares_a = (1.0 + 0.5 + 2 / 3) / 3
    p_expected = shares_a**2 + (1 - shares_a) ** 2
    expected = (np.mean(p_units) - p_expected) / (1 - p_expected)
    assert metrics.fleiss_kappa(table) == pytest.approx(expected)


def test_fleiss_kappa_is_undefined_with_one_category_or_no_pairs():
    assert metrics.fleiss_kappa([[3, 0], [3, 0]]) is None
    assert metrics.fleiss_kappa([[1, 0], [0, 1]]) is None


# -- Cohen's kappa ---------------------------------------------------------------------------------


def test_cohen_kappa_by_hand():
    # 50 items: both yes 20, first yes/second no 5, first no/second yes 10, both no 15.
    # p_o = 35/50 = 0.7; p_e = (25·30 + 25·20)/50² = 0.5; κ = (0.7 - 0.5)/(1 - 0.5) = 0.4
    first = ["yes"] * 25 + ["no"] * 25
    second = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    confusion = metrics.confusion_matrix(first, second, ["yes", "no"])
    assert confusion.tolist() == [[20, 5], [10, 15]]
    assert metrics.cohen_kappa(confusion) == pytest.approx(0.4)


def test_cohen_kappa_edge_cases():
    assert metrics.cohen_kappa(np.zeros((2, 2))) is None
    assert metrics.cohen_kappa([[5, 0], [0, 0]]) is None  # one category only: p_e = 1
    assert metrics.cohen_kappa([[3, 0], [0, 2]]) == pytest.approx(1.0)


def test_pairwise_cohen_kappa_uses_only_shared_units():
    ratings = {
        "ann": {1: "A", 2: "B", 3: "A", 4: "B"},
        "bob": {1: "A", 2: "B", 3: "B"},
        "cy": {9: "A"},
    }
    pairs = {(p.first, p.second): p for p in metrics.pairwise_cohen_kappa(ratings, ["A", "B"])}
    ann_bob = pairs[("ann", "bob")]
    assert ann_bob.shared_units == 3
    # confusion [[1, 1], [0, 1]]: p_o = 2/3, p_e = (2·1 + 1·2)/9 = 4/9
    assert ann_bob.kappa == pytest.approx((2 / 3 - 4 / 9) / (1 - 4 / 9))
    assert pairs[("ann", "cy")].shared_units == 0
    assert pairs[("ann", "cy")].kappa is None


# -- rankings --------------------------------------------------------------------------------------


def test_tiers_become_mid_ranks():
    ranks = metrics.tiers_to_ranks([[7], [3, 9], [1]], [1, 3, 7, 9])
    assert ranks.tolist() == [4.0, 2.5, 1.0, 2.5]


@pytest.mark.parametrize("seed", range(8))
def test_kendall_w_matches_friedman_with_ties(seed):
    # W = χ²_F / (m (n - 1)) holds with both statistics tie-corrected.
    rng = np.random.default_rng(seed)
    raters, items = 4, 5
    scores = rng.integers(0, 3, size=(raters, items))  # coarse scores: many ties
    ranks = np.array([rankdata(-s) for s in scores])  # mid-ranks, 1 = best

    w = metrics.kendall_w(ranks)

    chi2 = friedmanchisquare(*ranks.T).statistic
    assert w == pytest.approx(chi2 / (raters * (items - 1)), abs=1e-12)


def test_kendall_w_by_hand():
    identical = [[1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, 4]]
    assert metrics.kendall_w(identical) == pytest.approx(1.0)
    reversed_pair = [[1, 2, 3, 4], [4, 3, 2, 1]]
    assert metrics.kendall_w(reversed_pair) == pytest.approx(0.0)
    assert metrics.kendall_w([[1, 2, 3]]) is None  # a single annotator
    assert metrics.kendall_w([[1.5, 1.5], [1.5, 1.5]]) is None  # everything tied


@pytest.mark.parametrize("seed", range(10))
def test_kendall_tau_matches_scipy_with_ties(seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 4, size=7).astype(float)
    y = rng.integers(0, 4, size=7).astype(float)
    expected = kendalltau(x, y).statistic
    ours = metrics.kendall_tau(x, y)
    if math.isnan(expected):
        assert ours is None
    else:
        assert ours == pytest.approx(expected, abs=1e-12)


def test_consensus_tau_leaves_the_annotator_out():
    ranks = {"ann": [1, 2, 3], "bob": [1, 2, 3], "cy": [3, 2, 1]}
    taus = metrics.consensus_tau(ranks)
    # ann against the mean of bob and cy (all tied at 2): undefined
    assert taus["ann"] is None
    # cy against ann and bob (1, 2, 3): perfectly reversed
    assert taus["cy"] == pytest.approx(-1.0)
    assert metrics.consensus_tau({"solo": [1, 2]}) == {"solo": None}


# -- position bias ---------------------------------------------------------------------------------


def test_position_bias_flags_a_skew_and_not_a_fair_coin():
    result = metrics.position_bias({"lefty": (60, 0), "fair": (31, 29), "new": (0, 0)})
    assert result["lefty"].flagged
    assert result["lefty"].p_value < 1e-10
    assert result["lefty"].share_left == 1.0
    assert not result["fair"].flagged
    assert result["fair"].p_value > 0.5
    assert result["new"].p_value is None
    assert not result["new"].flagged


def test_holm_adjustment_by_hand():
    assert metrics.holm_adjust([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


# -- durations and per-annotator counters ----------------------------------------------------------


def test_duration_bins_and_median():
    assert metrics.duration_bin(0) == 0
    assert metrics.duration_bin(2_999) == metrics.DURATION_EDGES_S.index(2.5)
    assert metrics.duration_bin(3_000) == metrics.DURATION_EDGES_S.index(3)
    assert metrics.duration_bin(10_000_000) == metrics.DURATION_BINS - 1
    rng = np.random.default_rng(0)
    durations = rng.lognormal(mean=np.log(14_000), sigma=0.6, size=5_000)
    histogram = metrics.duration_histogram(durations)
    median = metrics.histogram_quantile(histogram, 0.5)
    assert median == pytest.approx(np.median(durations) / 1000, rel=0.03)
    assert metrics.share_faster_than(histogram, 3) == pytest.approx(
        np.mean(durations < 3000), abs=1e-12
    )
    assert metrics.histogram_quantile(np.zeros(metrics.DURATION_BINS), 0.5) is None
    with pytest.raises(ValueError, match="fast threshold"):
        metrics.share_faster_than(histogram, 3.3)


def test_annotator_counters_add_subtract_and_summarise():
    first = AnnotatorCounters(labels=8, skips=2, left=5, right=3, gold_correct=3, gold_answered=4)
    first.durations[metrics.duration_bin(1_000)] += 2
    first.durations[metrics.duration_bin(20_000)] += 6
    second = AnnotatorCounters(labels=2, consensus_agree=1, consensus_compared=2)

    total = first + second

    assert total - second == first
    assert AnnotatorCounters.from_dict(total.to_dict()) == total
    summary = metrics.annotator_summary(total, fast_seconds=3)
    assert summary.labels == 10
    assert summary.skip_rate == pytest.approx(2 / 12)
    assert summary.gold_accuracy == pytest.approx(0.75)
    assert summary.consensus_agreement == pytest.approx(0.5)
    assert summary.share_left == pytest.approx(5 / 8)
    assert summary.fast_share == pytest.approx(2 / 8)
    assert (total - total).is_zero()


def test_leave_one_out_plurality():
    counts = np.array([2, 1, 0])  # A, A, B
    assert metrics.leave_one_out_plurality(counts, 0) is None  # others: A, B (a tie)
    assert metrics.leave_one_out_plurality(counts, 1) == 0  # others: A, A
    assert metrics.leave_one_out_plurality(np.array([1, 0, 0]), 0) is None  # alone


def test_vectorised_position_bias_equals_scipy_binomtest():
    from scipy.stats import binomtest

    rng = np.random.default_rng(5)
    left = np.concatenate([rng.integers(0, 40, size=60), [0, 5, 10, 200, 0]])
    right = np.concatenate([rng.integers(0, 40, size=60), [0, 5, 0, 180, 7]])

    ours = metrics.position_bias_tests(left, right)

    for lf, rt, p in zip(left, right, ours, strict=True):
        if lf + rt == 0:
            assert math.isnan(p)
        else:
            expected = binomtest(int(lf), int(lf + rt), 0.5).pvalue
            assert p == pytest.approx(expected, rel=1e-9, abs=1e-15)
