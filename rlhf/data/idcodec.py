"""Compact storage for a snapshot's label ids and versions.

Sorted ids are stored as zlib-compressed little-endian int64 deltas: labels of a project are
mostly consecutive, so a million ids take a few kilobytes instead of the ~40 MB of a
million-row join table, and decode in milliseconds.
"""

from __future__ import annotations

import hashlib
import zlib

import numpy as np


def encode_ids(ids: np.ndarray) -> bytes:
    ids = np.asarray(ids, dtype=np.int64)
    if len(ids) and np.any(np.diff(ids) <= 0):
        raise ValueError("ids must be strictly increasing")
    deltas = np.diff(ids, prepend=np.int64(0))
    return zlib.compress(deltas.astype("<i8").tobytes(), level=6)


def decode_ids(blob: bytes) -> np.ndarray:
    if not blob:
        return np.zeros(0, dtype=np.int64)
    return np.cumsum(np.frombuffer(zlib.decompress(blob), dtype="<i8")).astype(np.int64)


def encode_versions(versions: np.ndarray) -> bytes:
    return zlib.compress(np.asarray(versions, dtype="<u4").tobytes(), level=6)


def decode_versions(blob: bytes) -> np.ndarray:
    if not blob:
        return np.zeros(0, dtype=np.uint32)
    return np.frombuffer(zlib.decompress(blob), dtype="<u4").astype(np.int64)


def ids_sha256(ids: np.ndarray, versions: np.ndarray) -> str:
    """One digest over (id, version) pairs, independent of how they are stored."""
    pairs = np.stack([np.asarray(ids, "<i8"), np.asarray(versions, "<i8")], axis=1)
    return hashlib.sha256(np.ascontiguousarray(pairs).tobytes()).hexdigest()
