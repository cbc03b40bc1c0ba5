"""MinHash signatures: estimates close to exact Jaccard and to datasketch's."""

import random

import numpy as np
from datasketch import MinHash

from rlhf.data.minhash import MinHasher, estimate_jaccard, lsh_params

WORDS = [
    "the",
    "a",
    "reward",
    "model",
    "learns",
    "which",
    "answer",
    "people",
    "prefer",
    "and",
    "then",
    "guides",
    "policy",
    "training",
    "toward",
    "helpful",
    "honest",
    "harmless",
    "replies",
    "without",
    "inventing",
    "facts",
    "about",
    "data",
    "or",
    "code",
]


def shingles(text: str, k: int = 3) -> set[str]:
    words = text.lower().split()
    return {" ".join(words[i : i + k]) for i in range(max(1, len(words) - k + 1))}


def test_estimates_track_exact_jaccard_as_closely_as_datasketch():
    # given 300 pairs of texts, the second an edited copy of the first
    rng = random.Random(7)
    hasher = MinHasher()
    ours, theirs = [], []
    for _ in range(300):
        base = [rng.choice(WORDS) for _ in range(rng.randint(8, 120))]
        other = list(base)
        for _ in range(rng.randint(0, len(base) // 3)):
            other[rng.randrange(len(other))] = rng.choice(WORDS)
        a, b = " ".join(base), " ".join(other)
        sa, sb = shingles(a), shingles(b)
        exact = len(sa & sb) / len(sa | sb)

        # when both estimate the Jaccard similarity with 64 permutations
        sig = hasher.signatures([a, b])
        m1, m2 = MinHash(num_perm=64), MinHash(num_perm=64)
        m1.update_batch([s.encode() for s in sa])
        m2.update_batch([s.encode() for s in sb])
        ours.append(estimate_jaccard(sig[0], sig[1])[0] - exact)
        theirs.append(m1.jaccard(m2) - exact)

    # then our error is unbiased and no worse than datasketch's (plus a small allowance)
    ours, theirs = np.abs(ours), np.abs(theirs)
    assert abs(np.mean(ours)) < 0.07
    assert np.mean(ours) <= np.mean(theirs) + 0.015
    assert np.quantile(ours, 0.95) < 0.15


def test_equal_texts_have_equal_signatures_whatever_the_batch():
    # given the same text in two different batches
    hasher = MinHasher()
    text = "Is it safe to mix bleach and ammonia for cleaning?"

    # when hashed
    a = hasher.signatures([text, "something else entirely"])[0]
    b = hasher.signatures(["x", "y", text])[2]

    # then the signatures are identical
    assert np.array_equal(a, b)


def test_case_and_punctuation_do_not_matter_but_words_do():
    hasher = MinHasher()
    sig = hasher.signatures(
        ["Hello, World! How are you?", "hello world how are you", "goodbye moon where were we"]
    )
    assert estimate_jaccard(sig[0], sig[1])[0] == 1.0
    assert estimate_jaccard(sig[0], sig[2])[0] < 0.1


def test_short_and_wordless_texts_get_signatures():
    hasher = MinHasher()
    sig = hasher.signatures(["hi", "?!?", "", "ok then"])
    assert sig.shape == (4, 64)
    assert estimate_jaccard(sig[0], sig[3])[0] < 0.2


def test_lsh_parameters_put_the_s_curve_at_the_threshold():
    for threshold in (0.5, 0.7, 0.8, 0.9):
        bands, rows = lsh_params(threshold, 64)
        assert bands * rows <= 64
        # the S-curve's midpoint (1/b)^(1/r) sits near the threshold
        assert abs((1 / bands) ** (1 / rows) - threshold) < 0.12
