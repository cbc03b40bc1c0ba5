"""Atomic, verifiable checkpoints.

A checkpoint is written into a staging folder, gets a manifest listing the sha256 of every
file (``tandem-checkpoint.json``), is flushed to disk and only then renamed to
``checkpoints/step-<global step>``: the rename is the commit, so a folder under that name is
either complete or absent. A run that was killed mid-write leaves a staging folder, which is
swept away on the next start.

Loading verifies every file against the manifest and refuses folders with unlisted files; the
newest checkpoint that verifies wins, so a truncated newest one falls back to the previous.
The manifest's own sha256 identifies the checkpoint: the platform records it from the
``checkpoint`` progress event and may pass the recorded digests back as ``trusted`` so that only
checkpoints it saw being written are ever loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from rlhf.training.provenance import sha256_file

MANIFEST = "tandem-checkpoint.json"
FORMAT = "tandem-checkpoint/1"
PREFIX = "step-"
# Files a checkpoint never needs and that are pickles: removed before the manifest is written.
UNWANTED = ("training_args.bin",)


@dataclass(frozen=True)
class CheckpointInfo:
    path: Path
    global_step: int
    manifest_sha256: str


def checkpoint_name(global_step: int) -> str:
    return f"{PREFIX}{global_step:08d}"


def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
    _fsync_dir(root)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def file_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): sha256_file(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }


def write_manifest(root: Path, meta: dict) -> str:
    """Write the manifest of ``root`` (every file's sha256 plus ``meta``); return its sha256."""
    for name in UNWANTED:
        (root / name).unlink(missing_ok=True)
    manifest = {"format": FORMAT, **meta, "files": file_hashes(root)}
    text = json.dumps(manifest, indent=2, sort_keys=True).encode()
    (root / MANIFEST).write_bytes(text)
    return hashlib.sha256(text).hexdigest()


def commit(staging: Path, checkpoints_dir: Path, *, global_step: int, meta: dict) -> CheckpointInfo:
    """Seal ``staging`` with a manifest and rename it into place as the step's checkpoint."""
    digest = write_manifest(staging, {**meta, "global_step": global_step, "created": time.time()})
    _fsync_tree(staging)
    checkpoints_dir.mkdir(parents=True, exist_ok=True)
    target = checkpoints_dir / checkpoint_name(global_step)
    if target.exists():
        # The same step written again (a resumed attempt redoing it): swap the old one out
        # first so that the name never points at a half-removed folder.
        shutil.rmtree(target.rename(checkpoints_dir / f".old-{target.name}-{time.time_ns()}"))
    os.replace(staging, target)
    _fsync_dir(checkpoints_dir)
    return CheckpointInfo(target, global_step, digest)


def verify(path: Path, *, trusted: set[str] | None = None) -> tuple[CheckpointInfo | None, str]:
    """The checkpoint's identity if every file matches its manifest, else None and the reason."""
    manifest_path = path / MANIFEST
    try:
        text = manifest_path.read_bytes()
        manifest = json.loads(text)
    except (OSError, ValueError):
        return None, "no readable manifest"
    if manifest.get("format") != FORMAT or not isinstance(manifest.get("files"), dict):
        return None, "not a Tandem checkpoint manifest"
    digest = hashlib.sha256(text).hexdigest()
    if trusted is not None and digest not in trusted:
        return None, "manifest hash was not recorded by the platform"
    listed = manifest["files"]
    present = {str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()} - {MANIFEST}
    if present - set(listed):
        return None, f"unlisted files: {sorted(present - set(listed))[:3]}"
    for name, expected in listed.items():
        file = path / name
        if not file.is_file():
            return None, f"missing {name}"
        if sha256_file(file) != expected:
            return None, f"{name} does not match its recorded sha256"
    return CheckpointInfo(path, int(manifest["global_step"]), digest), ""


def is_complete(path: Path, manifest_sha256: str) -> bool:
    """Whether ``path`` holds the manifest with this sha256 and every file it lists (present,
    not hashed: a cheap check for a copy or links taken while the source may be pruned)."""
    try:
        text = (path / MANIFEST).read_bytes()
        listed = json.loads(text)["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if hashlib.sha256(text).hexdigest() != manifest_sha256:
        return False
    return all((path / name).is_file() for name in listed)


def candidates(checkpoints_dir: Path) -> list[Path]:
    """Committed checkpoint folders, newest first."""
    if not checkpoints_dir.is_dir():
        return []
    found = [p for p in checkpoints_dir.iterdir() if p.is_dir() and p.name.startswith(PREFIX)]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX) :]), reverse=True)


def latest_valid(
    checkpoints_dir: Path, *, trusted: set[str] | None = None
) -> tuple[CheckpointInfo | None, list[tuple[str, str]]]:
    """The newest checkpoint that verifies, and (name, reason) for each newer one refused."""
    refused = []
    for path in candidates(checkpoints_dir):
        info, reason = verify(path, trusted=trusted)
        if info is not None:
            return info, refused
        refused.append((path.name, reason))
    return None, refused


# A checkpoint past the newest ``keep`` is removed only once it is this old. Under a worker,
# the child announces each checkpoint and the worker hard-links it before recording it
# (rlhf.runs.execution, polling every 0.2 s, slower on a loaded machine); a fast child (a
# small model: several checkpoints a second) pruned checkpoints before the worker could keep
# them, and the run was left with none to resume from. Large models take longer than this to
# write one checkpoint, so the grace costs them at most one more on disk for a while.
PRUNE_GRACE_S = 30.0


def prune(
    checkpoints_dir: Path, keep: int, *, grace_s: float = PRUNE_GRACE_S, now: float | None = None
) -> None:
    """Remove committed checkpoints past the newest ``keep`` that were written more than
    ``grace_s`` seconds ago (by their manifest's modification time)."""
    now = time.time() if now is None else now
    for path in candidates(checkpoints_dir)[keep:]:
        try:
            written = (path / MANIFEST).stat().st_mtime
        except FileNotFoundError:
            written = 0.0  # no manifest: not a checkpoint anyone can resume
        if now - written >= grace_s:
            shutil.rmtree(path, ignore_errors=True)


def sweep_staging(root: Path) -> None:
    """Remove folders left by writes that never committed (a crash mid-checkpoint)."""
    if root.is_dir():
        for path in root.iterdir():
            if path.is_dir() and path.name.startswith((".staging", ".old-")):
                shutil.rmtree(path, ignore_errors=True)
