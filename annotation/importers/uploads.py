"""What an upload may be (gzip yes; archives and pickles never), and the whole import."""

from __future__ import annotations

import hashlib

from django.conf import settings

from annotation.importers.parsing import detect_format, parse_import, size_refusal
from annotation.importers.writing import import_rows
from annotation.models import ImportBatch, Project
from config.errors import PayloadTooLarge, ValidationFailed
from config.safepaths import bounded_gunzip, display_filename

# Leading bytes of files that are refused outright, with the reason a person can act on.
_REFUSED_MAGIC = (
    (b"PK\x03\x04", "a zip archive"),
    (b"PK\x05\x06", "a zip archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"BZh", "a bzip2 file"),
    (b"\xfd7zXZ\x00", "an xz file"),
    (b"\x28\xb5\x2f\xfd", "a zstd file"),
    (b"\x80\x02", "a Python pickle"),
    (b"\x80\x03", "a Python pickle"),
    (b"\x80\x04", "a Python pickle"),
    (b"\x80\x05", "a Python pickle"),
)
# Files people pick by mistake: named plainly ("this looks like an image, not JSONL").
_MISTAKEN_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "an image"),
    (b"\xff\xd8\xff", "an image"),
    (b"GIF87a", "an image"),
    (b"GIF89a", "an image"),
    (b"RIFF", "an image or a media file"),
    (b"%PDF-", "a PDF document"),
    (b"\xd0\xcf\x11\xe0", "an old Office document"),
)
GZIP_MAX_RATIO = 200


# Room a multipart request needs around its file (boundaries, headers, the form's fields).
MULTIPART_OVERHEAD_BYTES = 1024 * 1024


def declared_length(meta) -> int | None:
    """A request's Content-Length (``request.META``), or None when absent or not a number."""
    raw = meta.get("CONTENT_LENGTH") or ""
    return int(raw) if raw.isascii() and raw.isdigit() else None


def upload_size_check(*, file_bytes: int | None = None, request_bytes: int | None = None):
    """Refuse an upload by its size before it is read: ``request_bytes`` is the request's
    Content-Length (checked before the multipart body is parsed, so a huge upload is never
    spooled to disk), ``file_bytes`` the parsed file's size (checked before it is read)."""
    limit = settings.TANDEM_MAX_IMPORT_BYTES
    if request_bytes is not None and request_bytes > limit + MULTIPART_OVERHEAD_BYTES:
        raise PayloadTooLarge(f"the upload is larger than the import limit of {limit} bytes")
    if file_bytes is not None and file_bytes > limit:
        raise PayloadTooLarge(
            f"{size_refusal(file_bytes)} (larger than the import limit of {limit} bytes)"
        )


def unpack_upload(data: bytes, filename: str) -> tuple[bytes, str]:
    """The file as text rows: gzip is expanded (bounded, so a bomb is refused); archives and
    pickles are refused with a clear reason (nothing in an upload is ever unpickled)."""
    filename = display_filename(filename)
    if data[:2] == b"\x1f\x8b":
        data = bounded_gunzip(
            data, max_bytes=settings.TANDEM_MAX_IMPORT_BYTES, max_ratio=GZIP_MAX_RATIO
        )
        filename = filename[:-3] if filename.lower().endswith(".gz") else filename
    for magic, what in _MISTAKEN_MAGIC:
        if data.startswith(magic):
            raise ValidationFailed(
                f"{filename}: this looks like {what}, not JSONL or CSV; export your rows as "
                "JSON Lines (one JSON object per line) or CSV",
                code="unsupported_file",
            )
    for magic, what in _REFUSED_MAGIC:
        if data.startswith(magic):
            raise ValidationFailed(
                f"{filename} is {what}; upload JSONL or CSV (optionally gzip-compressed)",
                code="unsupported_file",
            )
    if len(data) > 262 and data[257:262] == b"ustar":
        raise ValidationFailed(
            f"{filename} is a tar archive; upload JSONL or CSV (optionally gzip-compressed)",
            code="unsupported_file",
        )
    return data, filename


def import_file(
    *,
    project: Project,
    data: bytes,
    filename: str,
    kind: str,
    created_by,
    annotator_name: str | None = None,
    task_kinds: list[str] | None = None,
) -> ImportBatch:
    """Validate then import a whole file (the service behind the API, page and CLI)."""
    data, filename = unpack_upload(data, filename)
    rows = parse_import(
        project=project, data=data, filename=filename, kind=kind, task_kinds=task_kinds
    )
    return import_rows(
        project=project,
        rows=rows,
        kind=kind,
        created_by=created_by,
        filename=filename,
        sha256=hashlib.sha256(data).hexdigest(),
        fmt=detect_format(filename, data[:64]),
        annotator_name=annotator_name,
    )
