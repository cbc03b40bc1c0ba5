"""Exact and near-duplicate clustering of texts that were streamed past once.

A ``TextSpace`` collects one kind of text (prompts, or answers) as they stream by: a 64-bit
content hash per occurrence in memory, and on disk its MinHash signature and its LSH band keys
(one file per band). After the stream, ``cluster()`` sorts one band file at a time; texts
sharing a band key are candidates, exact duplicates are linked at once (same content hash),
other candidates are linked when their estimated Jaccard similarity reaches the threshold.
Connected components of those links are the clusters: a cluster's representative is its
earliest occurrence.

Memory: the content hashes (8 bytes per occurrence) and, while one band is sorted, about 24
bytes per occurrence; the texts themselves are never held.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from rlhf.data.minhash import estimate_jaccard


@dataclass
class Clusters:
    """labels: cluster id per occurrence (exact and near links); exact_labels: the same with
    exact links only; representative: earliest occurrence per cluster id; near_pairs:
    verified near-duplicate links between different texts; candidates: LSH candidate
    pairs checked."""

    labels: np.ndarray
    exact_labels: np.ndarray
    representative: np.ndarray
    exact_representative: np.ndarray
    near_pairs: int
    candidates: int
    near_edges: tuple[np.ndarray, np.ndarray]

    def cluster_sizes(self) -> np.ndarray:
        return np.bincount(self.labels) if len(self.labels) else np.zeros(0, dtype=np.int64)


class TextSpace:
    def __init__(self, workdir: Path, name: str, *, num_perm: int, bands: int, near: bool):
        self.near = near
        self.num_perm = num_perm
        self.bands = bands
        self._hashes: list[np.ndarray] = []
        self.size = 0
        self._sig_path = Path(workdir) / f"{name}.sig"
        self._band_paths = [Path(workdir) / f"{name}.band{b}" for b in range(bands)]
        if near:
            self._sig = open(self._sig_path, "wb")  # noqa: SIM115 (closed in finish)
            self._band = [open(p, "wb") for p in self._band_paths]  # noqa: SIM115

    def add(self, hashes: np.ndarray, signatures=None, band_keys=None) -> int:
        """Append occurrences; returns the index of the first one."""
        base = self.size
        self._hashes.append(np.asarray(hashes, dtype=np.uint64))
        self.size += len(hashes)
        if self.near:
            self._sig.write(np.ascontiguousarray(signatures, dtype=np.uint16).tobytes())
            for b, f in enumerate(self._band):
                f.write(np.ascontiguousarray(band_keys[:, b], dtype=np.uint64).tobytes())
        return base

    @property
    def hashes(self) -> np.ndarray:
        if len(self._hashes) != 1:
            merged = np.concatenate(self._hashes) if self._hashes else np.zeros(0, np.uint64)
            self._hashes = [merged]
        return self._hashes[0]

    def cluster(self, threshold: float) -> Clusters:
        hashes = self.hashes
        n = len(hashes)
        if self.near:
            self._sig.close()
            for f in self._band:
                f.close()
            columns = (np.fromfile(p, dtype=np.uint64) for p in self._band_paths)
        else:
            columns = iter([hashes])
        firsts, others = [], []
        for keys in columns:
            a, b = _star_pairs(keys)
            firsts.append(a)
            others.append(b)
        a = np.concatenate(firsts) if firsts else np.zeros(0, np.int64)
        b = np.concatenate(others) if others else np.zeros(0, np.int64)
        pair_key = np.unique((a.astype(np.uint64) << np.uint64(32)) | b.astype(np.uint64))
        del a, b
        a = (pair_key >> np.uint64(32)).astype(np.int64)
        b = (pair_key & np.uint64(0xFFFFFFFF)).astype(np.int64)
        exact = hashes[a] == hashes[b]
        near = np.zeros(len(a), dtype=bool)
        candidates = int((~exact).sum())
        if self.near and candidates:
            ca, cb = a[~exact], b[~exact]
            ids = np.unique(np.concatenate([ca, cb]))
            rows = _read_rows(self._sig_path, ids, self.num_perm)
            est = estimate_jaccard(rows[np.searchsorted(ids, ca)], rows[np.searchsorted(ids, cb)])
            near[~exact] = est >= threshold
        exact_labels = _components(n, a[exact], b[exact])
        labels = _components(n, a[exact | near], b[exact | near])
        return Clusters(
            labels=labels,
            exact_labels=exact_labels,
            representative=_earliest(labels),
            exact_representative=_earliest(exact_labels),
            near_pairs=int(near.sum()),
            candidates=candidates,
            near_edges=(a[near], b[near]),
        )

    def cleanup(self) -> None:
        for path in [self._sig_path, *self._band_paths]:
            path.unlink(missing_ok=True)


def _star_pairs(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first, other) index pairs linking every member of a group of equal keys to the
    group's earliest member."""
    if len(keys) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    new_group = np.empty(len(keys), dtype=bool)
    new_group[0] = True
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=new_group[1:])
    del sorted_keys
    # For every position, the start of its group (a running maximum of group starts).
    group_start = np.where(new_group, np.arange(len(keys)), 0)
    np.maximum.accumulate(group_start, out=group_start)
    members = np.flatnonzero(~new_group)
    return order[group_start[members]], order[members]


def _components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if n == 0:
        return np.zeros(0, dtype=np.int32)
    graph = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels.astype(np.int32)


def _earliest(labels: np.ndarray) -> np.ndarray:
    if not len(labels):
        return np.zeros(0, dtype=np.int64)
    # Components are numbered in order of their first node (scipy's breadth-first search
    # starts from the lowest unvisited node), but compute it rather than rely on that.
    first = np.full(int(labels.max()) + 1, len(labels), dtype=np.int64)
    np.minimum.at(first, labels, np.arange(len(labels), dtype=np.int64))
    return first


def _read_rows(path: Path, ids: np.ndarray, width: int) -> np.ndarray:
    """Signature rows ``ids`` (sorted) of a uint16 file, without mapping the whole file."""
    row_bytes = width * 2
    out = np.empty((len(ids), width), dtype=np.uint16)
    fd = os.open(path, os.O_RDONLY)
    try:
        for i, index in enumerate(ids.tolist()):
            out[i] = np.frombuffer(os.pread(fd, row_bytes, index * row_bytes), dtype=np.uint16)
    finally:
        os.close(fd)
    return out
