"""Snapshot downloads over HTTP: the canonical export's files, and folders as tar archives.

A ready snapshot's export folder (``rlhf.data.export``: per shape, JSONL and Parquet per split
and the ``hf/`` folder ``datasets.load_from_disk`` reads; ``manifest.json``, ``DATA_CARD.md``)
carries ``MANIFEST.sha256``: the sha256 of every other file, in ``sha256sum -c`` format
(``config.downloads.manifest_lines``, the same rule as a model bundle's). It is written when the
snapshot is built; a snapshot built before that gets it on its first download.

What can be downloaded (``?file=``):

- any path the manifest lists, and ``MANIFEST.sha256`` itself: the file as it is;
- ``<shape>/hf.tar``: that shape's ``datasets`` folder as an uncompressed tar, top folder
  ``snapshot-<id>-<shape>``;
- ``export.tar``: the whole export, top folder ``snapshot-<id>``.

Every answer is served by ``config.ranges.ranged_response`` (200/206/416, ``If-Range``), with a
strong ETag: a file's sha256 from the manifest, or for a tar the sha256 of its members' manifest
lines (members are stamped with the snapshot's finish time, so the same snapshot is always the
same tar bytes). A snapshot is immutable, so a download resumed tomorrow splices correctly.
Each response that carried bytes is one ``snapshot_downloaded`` event in the data audit log.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from annotation.audit import DataAuditAction, data_audit_record
from config.downloads import (
    MANIFEST,
    TarLayout,
    file_read_range,
    manifest_lines,
    manifest_parse,
)
from config.errors import Conflict, Gone, ValidationFailed
from rlhf.data.records import SHAPES
from rlhf.models import DatasetSnapshot, SnapshotStatus
from rlhf.snapshots.selectors import snapshot_withdrawal_problem

EXPORT_ARCHIVE = "export.tar"
DATASETS_ARCHIVE = "hf.tar"  # under each shape: <shape>/hf.tar


def snapshot_manifest_write(*, export_dir: Path) -> str:
    """Write ``MANIFEST.sha256`` into an export folder (atomically); returns its text."""
    text = "\n".join(manifest_lines(export_dir)) + "\n"
    # Written beside the folder, never in it: a concurrent writer would hash a partial file.
    partial = Path(export_dir).parent / f".{MANIFEST}.{uuid.uuid4().hex}"
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, Path(export_dir) / MANIFEST)
    return text


def _ready_export(snapshot: DatasetSnapshot) -> Path:
    if problem := snapshot_withdrawal_problem(snapshot):
        # 410 before anything is read: a withdrawn snapshot holds a sealed text.
        raise Gone(problem, code="snapshot_withdrawn")
    if snapshot.status != SnapshotStatus.READY:
        raise Conflict(
            f"snapshot {snapshot.pk} is not ready ({snapshot.status})", code="snapshot_not_ready"
        )
    export_dir = Path(snapshot.export_path)
    if not (export_dir / "manifest.json").is_file():
        raise Conflict("the snapshot's canonical export is missing", code="export_missing")
    return export_dir


def snapshot_manifest(*, snapshot: DatasetSnapshot) -> dict[str, str]:
    """``{path: sha256}`` of a ready snapshot's export (written now if it predates manifests)."""
    export_dir = _ready_export(snapshot)
    path = export_dir / MANIFEST
    text = (
        path.read_text(encoding="utf-8")
        if path.is_file()
        else snapshot_manifest_write(export_dir=export_dir)
    )
    return manifest_parse(text)


def _archives(snapshot: DatasetSnapshot, export_dir: Path) -> dict[str, tuple[str, str]]:
    """``{file: (folder inside the export, top folder in the tar)}``; ``""``: the export."""
    archives = {EXPORT_ARCHIVE: ("", f"snapshot-{snapshot.pk}")}
    for shape in SHAPES:
        if (export_dir / shape / "hf").is_dir():
            archives[f"{shape}/{DATASETS_ARCHIVE}"] = (
                f"{shape}/hf",
                f"snapshot-{snapshot.pk}-{shape}",
            )
    return archives


def snapshot_files(*, snapshot: DatasetSnapshot) -> dict:
    """What ``snapshot_download`` serves: every file with its size and sha256, and the tar
    archives with the folder each holds (its members are checked against the same manifest)."""
    export_dir = _ready_export(snapshot)
    manifest = snapshot_manifest(snapshot=snapshot)
    files = [
        {"path": path, "size": (export_dir / path).stat().st_size, "sha256": digest}
        for path, digest in sorted(manifest.items())
    ]
    archives = [
        {"file": name, "folder": folder, "top": top, "size": _tar(snapshot, folder, top).size}
        for name, (folder, top) in _archives(snapshot, export_dir).items()
    ]
    return {
        "snapshot": snapshot.pk,
        "content_sha256": snapshot.content_sha256,
        "manifest_sha256": hashlib.sha256((export_dir / MANIFEST).read_bytes()).hexdigest(),
        "files": files,
        "archives": archives,
    }


def _tar(snapshot: DatasetSnapshot, folder: str, top: str) -> TarLayout:
    stamp = int(snapshot.finished_at.timestamp()) if snapshot.finished_at else 0
    return TarLayout(Path(snapshot.export_path) / folder, prefix=top, mtime=stamp)


@dataclass(frozen=True)
class SnapshotDownload:
    file: str
    size: int
    etag: str
    filename: str
    content_type: str
    read_range: Callable[[int, int], Iterator[bytes]]


CONTENT_TYPES = {
    ".jsonl": "application/jsonl",
    ".parquet": "application/vnd.apache.parquet",
    ".json": "application/json",
    ".md": "text/markdown; charset=utf-8",
    ".sha256": "text/plain; charset=utf-8",
    ".tar": "application/x-tar",
}


def snapshot_download(*, snapshot: DatasetSnapshot, file: str) -> SnapshotDownload:
    """One downloadable ``file`` of a ready snapshot; an unknown one is a 400 naming ``file``.

    The caller checked access (``selectors.snapshot_get``) and records what it sent with
    ``snapshot_download_sent``."""
    export_dir = _ready_export(snapshot)
    manifest = snapshot_manifest(snapshot=snapshot)
    archives = _archives(snapshot, export_dir)
    stem = f"snapshot-{snapshot.pk}-" + file.replace("/", "-")
    if file in archives:
        folder, top = archives[file]
        layout = _tar(snapshot, folder, top)
        inside = f"{folder}/" if folder else ""
        members = "".join(
            f"{digest}  {path}\n"
            for path, digest in sorted(manifest.items())
            if path.startswith(inside)
        )
        if not folder:  # the export's tar holds the manifest too
            members += f"{hashlib.sha256((export_dir / MANIFEST).read_bytes()).hexdigest()}\n"
        etag = hashlib.sha256(f"tar {top} {layout.size}\n{members}".encode()).hexdigest()
        return SnapshotDownload(
            file, layout.size, etag, f"{top}.tar", CONTENT_TYPES[".tar"], layout.read_range
        )
    if file in manifest or file == MANIFEST:
        path = export_dir / file
        etag = manifest.get(file) or hashlib.sha256(path.read_bytes()).hexdigest()
        return SnapshotDownload(
            file,
            path.stat().st_size,
            etag,
            stem,
            CONTENT_TYPES.get(Path(file).suffix, "application/octet-stream"),
            file_read_range(path),
        )
    raise ValidationFailed(
        f"snapshot {snapshot.pk} has no file {file!r}: a path of its MANIFEST.sha256, "
        f"{MANIFEST}, <shape>/{DATASETS_ARCHIVE} or {EXPORT_ARCHIVE} "
        f"(GET /api/snapshots/{snapshot.pk}/files/ lists them)",
        code="unknown_file",
        fields={"file": "not a file of this snapshot"},
    )


def snapshot_download_sent(
    *, snapshot: DatasetSnapshot, download: SnapshotDownload, actor, sent: str
) -> None:
    """One ``snapshot_downloaded`` event per response that carried bytes: who took which file
    of which snapshot, and which bytes (``sent``: the Content-Range, empty for the whole)."""
    data_audit_record(
        action=DataAuditAction.SNAPSHOT_DOWNLOADED,
        subject=f"snapshot:{snapshot.pk}:{download.file}",
        actor=actor,
        project=snapshot.project,
        details={
            "via": "api",
            "file": download.file,
            "sha256": download.etag,
            "content_sha256": snapshot.content_sha256,
            "size_bytes": download.size,
            "range": sent,
        },
    )
