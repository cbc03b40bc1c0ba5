"""Vectorised MinHash for near-duplicate detection, one batch of texts at a time.

Shingles are runs of ``shingle_words`` consecutive words, where a word is a maximal run of
ASCII letters, digits or non-ASCII bytes of the lower-cased UTF-8 text (punctuation and
whitespace separate words, so "Hello, world!" and "hello world" shingle alike). Everything
runs in numpy over the concatenated bytes of a batch: a word's hash mixes its first and last
eight bytes with its length (words longer than 16 bytes that share both ends and the length
collide, harmlessly), a shingle's hash mixes its words' hashes.

Signatures use one-permutation hashing (Li, Owen & Zhang, NeurIPS 2012): the top bits of a
shingle's hash pick one of ``num_perm`` bins and the bin keeps the smallest of the low bits.
That costs O(shingles) instead of O(shingles x permutations), and the fraction of equal bins
of two signatures estimates the Jaccard similarity of their shingle sets as classic MinHash
does. Empty bins (short texts) are filled by optimal densification (Shrivastava, ICML 2017):
an empty bin copies the first full bin of a fixed pseudo-random probe order, the same for
every text, so equal sets keep equal signatures. Tests compare the estimates with exact
Jaccard and with ``datasketch``.

Signatures are stored as uint16, the low 16 bits of each bin ("b-bit minwise hashing", Li &
Koenig, WWW 2010); unrelated bins then agree with probability 2**-16, which the estimate
corrects for.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

EMPTY = np.uint32(0xFFFFFFFF)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xFF51AFD7ED558CCD)
_M2 = np.uint64(0xC4CEB9FE1A85EC53)
_S33 = np.uint64(33)
_ALL_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)
_B16_COLLISION = 1.0 / 65536.0

# Bytes that belong to words: ASCII letters and digits, and every byte of a non-ASCII char.
_WORD_BYTE = np.zeros(256, dtype=bool)
_WORD_BYTE[list(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")] = True
_WORD_BYTE[128:] = True


@dataclass(frozen=True)
class MinHasher:
    """Turns texts into ``(n, num_perm)`` uint16 signatures.

    num_perm: bins per signature, a power of two; 64 estimates a Jaccard of 0.8 within about
        +-0.05 (one standard deviation).
    shingle_words: words per shingle; 3 means one edited word in a 100-word text still
        leaves a Jaccard near 0.94, while unrelated texts share almost no shingles.
    seed: changes every hash; signatures are only comparable under the same seed.
    """

    num_perm: int = 64
    shingle_words: int = 3
    seed: int = 1

    def __post_init__(self):
        if self.num_perm < 2 or self.num_perm & (self.num_perm - 1):
            raise ValueError("num_perm must be a power of two >= 2")
        if self.shingle_words < 1:
            raise ValueError("shingle_words must be >= 1")

    @cached_property
    def _probes(self) -> np.ndarray:
        # (attempts, num_perm) bins offered to each empty bin, attempt after attempt; enough
        # attempts that a text with two full bins of 64 is filled with probability > 0.999.
        rng = np.random.default_rng(self.seed)
        return rng.integers(0, self.num_perm, size=(8 * self.num_perm, self.num_perm))

    @cached_property
    def _salts(self) -> np.ndarray:
        rng = np.random.default_rng(self.seed + 1)
        return rng.integers(1, 2**63, size=self.shingle_words + 1, dtype=np.uint64) | 1

    def shingle_hashes(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Every shingle hash of a batch and the index of the text it came from.

        Returns ``(hashes (m,) uint64, owner (m,) int64)``. A text with fewer words than a
        shingle is one shingle of all its words; a text without words is one shingle of its
        whole bytes, so every text has at least one.
        """
        encoded = [t.lower().encode("utf-8") for t in texts]
        lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
        # Texts joined by a newline (a word separator); 8 spare bytes keep the unaligned
        # 8-byte reads below inside the buffer.
        blob = b"\n".join(encoded)
        n = len(blob)
        buf = np.frombuffer(blob + b"\0" * 8, dtype=np.uint8)
        is_word = _WORD_BYTE[buf[:n]]
        edges = np.flatnonzero(is_word[1:] != is_word[:-1]) + 1
        if n and is_word[0]:
            edges = np.concatenate(([0], edges))
        if n and is_word[-1]:
            edges = np.concatenate((edges, [n]))
        starts, ends = edges[0::2], edges[1::2]
        text_starts = np.zeros(len(encoded), dtype=np.int64)
        np.cumsum(lengths[:-1] + 1, out=text_starts[1:])
        word_owner = np.searchsorted(text_starts, starts, side="right") - 1
        word_hash = self._word_hashes(buf, starts, ends)

        k = self.shingle_words
        words_per_text = np.bincount(word_owner, minlength=len(encoded))
        # Full shingles: k consecutive words of one text.
        if len(word_hash) >= k:
            same_text = word_owner[: len(word_owner) - k + 1] == word_owner[k - 1 :]
            acc = word_hash[: len(word_hash) - k + 1] * self._salts[0]
            for j in range(1, k):
                acc = acc + word_hash[j : len(word_hash) - k + 1 + j] * self._salts[j]
            hashes = [_mix64(acc[same_text])]
            owners = [word_owner[: len(word_owner) - k + 1][same_text]]
        else:
            hashes, owners = [], []
        # Short texts: one shingle of all their words.
        short = np.flatnonzero((words_per_text > 0) & (words_per_text < k))
        if len(short):
            first_word = np.searchsorted(word_owner, short)
            acc = np.zeros(len(short), dtype=np.uint64)
            for j in range(k - 1):
                take = j < words_per_text[short]
                idx = np.minimum(first_word + j, len(word_hash) - 1)
                acc = acc + np.where(take, word_hash[idx] * self._salts[j], 0)
            hashes.append(_mix64(acc ^ self._salts[k]))
            owners.append(short)
        # Texts without words: one shingle of their bytes.
        wordless = np.flatnonzero(words_per_text == 0)
        if len(wordless):
            wl_starts = text_starts[wordless]
            wl_ends = wl_starts + lengths[wordless]
            hashes.append(_mix64(self._word_hashes(buf, wl_starts, wl_ends) ^ self._salts[k]))
            owners.append(wordless)
        return np.concatenate(hashes), np.concatenate(owners).astype(np.int64)

    def _word_hashes(self, buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        length = ends - starts
        # buf viewed as overlapping little-endian uint64s, one starting at every byte.
        u64 = np.ndarray((len(buf) - 7,), dtype="<u8", buffer=buf, strides=(1,))
        keep_bits = (np.minimum(length, 8) * 8).astype(np.uint64)
        mask = np.where(keep_bits >= 64, _ALL_ONES, (np.uint64(1) << keep_bits) - np.uint64(1))
        head = u64[starts] & mask
        tail = u64[np.maximum(ends - 8, starts)] & mask
        seed = np.uint64(self.seed * 0x9E3779B97F4A7C15 % (1 << 64))
        return _mix64(head ^ (tail * _GOLDEN) ^ (length.astype(np.uint64) + seed))

    def raw_signatures(self, texts: Sequence[str]) -> np.ndarray:
        """``(n, num_perm)`` uint32 bin minima; ``EMPTY`` where a bin got no shingle.

        The raw signature of a union of sets is the element-wise minimum of theirs; densify
        only after combining.
        """
        hashes, owner = self.shingle_hashes(texts)
        shift = np.uint64(64 - (self.num_perm.bit_length() - 1))
        slot = owner * self.num_perm + (hashes >> shift).astype(np.int64)
        sig = np.full(len(texts) * self.num_perm, EMPTY, dtype=np.uint32)
        np.minimum.at(sig, slot, (hashes & np.uint64(0xFFFFFFFF)).astype(np.uint32))
        return sig.reshape(len(texts), self.num_perm)

    def densify(self, raw: np.ndarray) -> np.ndarray:
        """Fill empty bins by optimal densification; returns uint16 ``(n, num_perm)``.

        Attempt ``a`` offers every still-empty bin ``i`` the bin ``probes[a, i]``; the first
        offer that lands on an originally full bin donates its value. The probe table is fixed
        by the seed, so equal raw signatures stay equal, and each bin's donor is an
        independent draw, which keeps the variance near classic MinHash for short texts
        (where copying the neighbouring bin would correlate the errors).
        """
        sig = raw.copy()
        full = raw != EMPTY
        rows = np.flatnonzero(full.any(axis=1) & ~full.all(axis=1))
        sub_raw, sub_full = raw[rows], full[rows]
        sub_sig, pending = sub_raw.copy(), ~sub_full
        live = np.arange(len(rows))
        probes = self._probes
        for attempt in range(len(probes)):
            if not len(live):
                break
            donor = probes[attempt]  # (num_perm,)
            hit = pending[live] & sub_full[live][:, donor]  # (live, num_perm)
            r, c = np.nonzero(hit)
            sub_sig[live[r], c] = sub_raw[live[r], donor[c]]
            pending[live[r], c] = False
            if attempt % 4 == 3:
                live = live[pending[live].any(axis=1)]
        # Past the probe table (a text with one or two shingles): take the row's minimum.
        left_r, left_c = np.nonzero(pending)
        if len(left_r):
            row_min = np.where(sub_full, sub_raw, EMPTY).min(axis=1)
            sub_sig[left_r, left_c] = row_min[left_r]
        sig[rows] = sub_sig
        return (sig & 0xFFFF).astype(np.uint16)

    def signatures(self, texts: Sequence[str]) -> np.ndarray:
        return self.densify(self.raw_signatures(texts))


def _mix64(x: np.ndarray) -> np.ndarray:
    """murmur3's fmix64, element-wise, wrapping mod 2**64."""
    x = x ^ (x >> _S33)
    x *= _M1
    x ^= x >> _S33
    x *= _M2
    x ^= x >> _S33
    return x


def estimate_jaccard(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Jaccard estimates for matching rows of two ``(n, num_perm)`` uint16 signature arrays."""
    equal = (np.atleast_2d(a) == np.atleast_2d(b)).mean(axis=1)
    return np.clip((equal - _B16_COLLISION) / (1.0 - _B16_COLLISION), 0.0, 1.0)


@functools.cache
def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows per band) minimising false positives plus false negatives around
    ``threshold`` under the S-curve ``1 - (1 - s**r)**b`` (Leskovec, Rajaraman & Ullman,
    Mining of Massive Datasets, ch. 3)."""
    s = np.linspace(0.0, 1.0, 501)
    below = s < threshold
    best, best_error = (1, num_perm), float("inf")
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            p = 1.0 - (1.0 - s**r) ** b
            error = np.trapezoid(np.where(below, p, 1.0 - p), s)
            if error < best_error:
                best, best_error = (b, r), error
    return best


def band_keys(signatures: np.ndarray, band: int, rows: int) -> np.ndarray:
    """uint64 keys of one band; equal keys make candidate pairs (verified afterwards)."""
    part = signatures[:, band * rows : (band + 1) * rows].astype(np.uint64)
    key = np.full(len(signatures), (band + 1) * 0x9E3779B97F4A7C15 % (1 << 64), dtype=np.uint64)
    for j in range(rows):
        key = _mix64(key ^ part[:, j])
    return key
