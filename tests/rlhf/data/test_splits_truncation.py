"""Split assignment by hash, and left truncation of long prompts."""

import itertools

import numpy as np
import pytest

from rlhf.data.splits import SplitConfig, assign_splits
from rlhf.data.truncation import TruncationConfig, truncate_prompt_left, truncate_row


def test_split_of_a_hash_never_changes_when_more_hashes_arrive():
    # given 10,000 hashes assigned, then 90,000 more assigned with them
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2**63, size=100_000, dtype=np.uint64)
    config = SplitConfig(seed=3, validation=0.1, test=0.1)
    before = assign_splits(hashes[:10_000], config)

    # when everything is assigned again
    after = assign_splits(hashes, config)

    # then the first 10,000 kept their split, and the shares are close to asked
    assert np.array_equal(before, after[:10_000])
    shares = np.bincount(after, minlength=3) / len(after)
    assert np.allclose(shares, [0.8, 0.1, 0.1], atol=0.01)


def test_another_seed_gives_another_assignment():
    hashes = np.arange(1000, dtype=np.uint64)
    a = assign_splits(hashes, SplitConfig(seed=1))
    b = assign_splits(hashes, SplitConfig(seed=2))
    assert not np.array_equal(a, b)


def conversation(*sizes):
    roles = ["user", "assistant"]
    return [{"role": roles[i % 2], "content": "x" * n} for i, n in enumerate(sizes)]


def test_oldest_turns_go_first_and_the_kept_part_starts_with_the_user():
    # given five turns of 10 characters and a budget of 25
    messages = conversation(10, 10, 10, 10, 10)

    # when truncated
    kept, cut = truncate_prompt_left(messages, budget=25)

    # then the last two fit, but the kept part must start with a user turn: only the last
    assert cut
    assert kept == messages[-1:]


def test_system_message_is_kept_when_it_fits():
    messages = [{"role": "system", "content": "sys"}, *conversation(50, 50, 10)]
    kept, cut = truncate_prompt_left(messages, budget=20)
    assert cut
    assert kept == [messages[0], messages[-1]]


def test_a_final_turn_over_budget_keeps_its_end():
    messages = [{"role": "user", "content": "0123456789"}]
    kept, cut = truncate_prompt_left(messages, budget=4)
    assert (kept, cut) == ([{"role": "user", "content": "6789"}], True)


def test_token_budget_uses_the_counting_function():
    # given a "tokenizer" that counts words
    config = TruncationConfig(max_prompt_tokens=3, count_tokens=lambda s: len(s.split()))
    row = {"id": "x", "prompt": [{"role": "user", "content": "one two three four five"}]}

    # when the row is truncated
    cut = truncate_row(row, "preference", config)

    # then the three last words remain
    assert cut
    assert row["prompt"] == [{"role": "user", "content": "three four five"}]


def test_sft_rows_keep_their_final_answer_whole():
    config = TruncationConfig(max_prompt_chars=5)
    row = {"messages": [*conversation(20, 20, 4), {"role": "assistant", "content": "y" * 50}]}
    assert truncate_row(row, "sft", config)
    assert row["messages"] == [
        {"role": "user", "content": "xxxx"},
        {"role": "assistant", "content": "y" * 50},
    ]


def shares(assigned):
    return np.bincount(assigned, minlength=3) / len(assigned)


def test_a_small_snapshot_holds_out_test_only_and_keeps_95_percent_to_train():
    # given 800 prompt clusters (a small project) and the default split
    hashes = np.random.default_rng(1).integers(0, 2**63, size=800, dtype=np.uint64)

    # when they are assigned
    assigned = assign_splits(hashes, SplitConfig())

    # then none goes to validation and about 5% to test, so ~760 of 800 train (not ~720)
    train, validation, test = np.bincount(assigned, minlength=3)
    assert validation == 0
    assert 0.03 * 800 < test < 0.07 * 800
    assert train == 800 - test


def test_validation_ramps_up_to_five_percent_and_test_never_moves_as_data_grows():
    rng = np.random.default_rng(2)
    hashes = rng.integers(0, 2**63, size=20_000, dtype=np.uint64)
    config = SplitConfig()
    sizes = [500, 1000, 1250, 1500, 1750, 2000, 5000, 20_000]
    assigned = {n: assign_splits(hashes[:n], config) for n in sizes}

    # the share follows the rule exactly
    assert [config.validation_share(n) for n in sizes] == pytest.approx(
        [0.0, 0.0, 0.0125, 0.025, 0.0375, 0.05, 0.05, 0.05]
    )
    # a large snapshot gets the full 5% / 5%
    assert np.allclose(shares(assigned[20_000]), [0.9, 0.05, 0.05], atol=0.005)
    for smaller, larger in itertools.pairwise(sizes):
        before, after = assigned[smaller], assigned[larger][:smaller]
        # a test prompt stays in test and nothing joins test from the older prompts
        assert np.array_equal(before == 2, after == 2)
        # prompts only ever move from train to validation, never back
        assert not np.any((before == 1) & (after == 0))
        # and the training rows never shrink as data is added
        assert np.count_nonzero(assigned[larger] == 0) >= np.count_nonzero(before == 0)


def test_an_explicit_validation_share_applies_at_every_size():
    hashes = np.random.default_rng(3).integers(0, 2**63, size=800, dtype=np.uint64)
    assigned = assign_splits(hashes, SplitConfig(validation=0.1, test=0.1))
    assert np.allclose(shares(assigned), [0.8, 0.1, 0.1], atol=0.035)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"validation": "0.1"}, "split validation must be a number"),
        ({"test": None}, "split test must be a number"),
        ({"validation": 0.5, "test": 0.5}, "leave room for train"),
    ],
)
def test_a_split_share_that_is_not_a_usable_number_is_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        SplitConfig(**fields)
