"""Byte-addressable downloads of files and folders, for ``config.ranges.ranged_response``.

``TarLayout`` is an uncompressed tar of a folder assembled on the fly: its size is known before
the first byte, so it carries ``Content-Length`` and serves any byte range without the tar ever
being written to disk. ``file_read_range`` reads a range of one plain file the same way.
``manifest_lines`` writes the one manifest format of a downloadable folder
(``MANIFEST.sha256``, what ``sha256sum -c`` reads). Model export bundles
(``models_registry.bundles``) and snapshot downloads (``rlhf.snapshots.downloads``) both serve
through these.
"""

from __future__ import annotations

import hashlib
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

CHUNK_BYTES = 1 << 20
MANIFEST = "MANIFEST.sha256"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def manifest_lines(folder: Path) -> list[str]:
    """``<sha256>  <path>`` for every file but the manifest, sorted (``sha256sum -c`` reads it)."""
    lines = []
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        if relative != MANIFEST:
            lines.append(f"{file_sha256(path)}  {relative}")
    return lines


def manifest_parse(text: str) -> dict[str, str]:
    """``{path: sha256}`` from a manifest's text."""
    return dict(reversed(line.split("  ", 1)) for line in text.splitlines() if line)


def manifest_mismatches(folder: Path) -> list[str]:
    """Paths whose bytes differ from the folder's manifest (missing or extra files included)."""
    folder = Path(folder)
    expected = manifest_parse((folder / MANIFEST).read_text(encoding="utf-8"))
    actual = manifest_parse("\n".join(manifest_lines(folder)))
    return sorted(p for p in expected.keys() | actual.keys() if expected.get(p) != actual.get(p))


def _tar_header(name: str, size: int, mtime: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = mtime
    info.mode = 0o644
    info.uname = info.gname = ""
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _read_file(path: Path, lo: int, hi: int) -> Iterator[bytes]:
    """Bytes ``lo`` up to (not including) ``hi`` of ``path``, in chunks of ``CHUNK_BYTES``."""
    with open(path, "rb") as fh:
        fh.seek(lo)
        remaining = hi - lo
        while remaining > 0:
            chunk = fh.read(min(CHUNK_BYTES, remaining))
            if not chunk:
                raise OSError(f"{path} shrank while it was sent")
            remaining -= len(chunk)
            yield chunk


def file_read_range(path: Path) -> Callable[[int, int], Iterator[bytes]]:
    """``read_range(start, end)`` (end inclusive) over one file, for ``ranged_response``."""
    return lambda start, end: _read_file(Path(path), start, end + 1)


@dataclass(frozen=True)
class TarSegment:
    offset: int
    length: int
    data: bytes | None  # a header or padding; None: the file's bytes
    path: Path | None = None


class TarLayout:
    """An uncompressed tar of a folder as a list of byte segments, so its size is known and any
    range of it can be read without writing the tar. Its bytes are what ``tarfile`` writes for
    the same members (PAX headers, end-of-archive blocks, padding to a record).

    ``mtime`` (seconds) stamps every member instead of each file's own modification time, so
    the tar of unchanged contents is the same bytes whenever it is served (a strong ETag)."""

    def __init__(self, folder: Path, *, prefix: str, mtime: int | None = None):
        self.segments: list[TarSegment] = []
        offset = 0

        def add(length: int, data: bytes | None, path: Path | None = None) -> None:
            nonlocal offset
            if length:
                self.segments.append(TarSegment(offset, length, data, path))
                offset += length

        for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
            stat = path.stat()
            name = f"{prefix}/{path.relative_to(folder).as_posix()}"
            stamp = int(stat.st_mtime) if mtime is None else int(mtime)
            header = _tar_header(name, stat.st_size, stamp)
            add(len(header), header)
            add(stat.st_size, None, path)
            add(-stat.st_size % tarfile.BLOCKSIZE, b"\0" * (-stat.st_size % tarfile.BLOCKSIZE))
        end = 2 * tarfile.BLOCKSIZE
        end += -(offset + end) % tarfile.RECORDSIZE
        add(end, b"\0" * end)
        self.size = offset

    def read_range(self, start: int, end: int) -> Iterator[bytes]:
        """Bytes ``start`` to ``end`` inclusive, in chunks of at most ``CHUNK_BYTES``."""
        for segment in self.segments:
            seg_end = segment.offset + segment.length - 1
            if seg_end < start or segment.offset > end:
                continue
            lo = max(start, segment.offset) - segment.offset
            hi = min(end, seg_end) - segment.offset + 1
            if segment.data is not None:
                yield segment.data[lo:hi]
                continue
            yield from _read_file(segment.path, lo, hi)
