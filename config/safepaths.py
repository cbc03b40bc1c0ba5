"""The one way a name or path from outside becomes a file on this machine.

Every entry point that takes a file name, a path or an archive from a user, an upload or a
stored record goes through here: imports, artifacts and checkpoints; a model folder a user
names (a model registered over HTTP, a run's model fields) through ``allowed_model_folder``,
under ``settings.TANDEM_MODEL_ROOTS``. The rules (each refused with ``UnsafePath`` and a
message that says which rule):

- a relative name never climbs out of its root: no ``..``, no absolute path, no drive letter
  or UNC prefix, no backslash, no NUL or control character, and no percent-encoded form of
  any of these (``%2e%2e%2f``, also double-encoded);
- no symbolic link on the way from the root to the file, and the resolved path stays inside
  the root (so a link planted later cannot redirect a write);
- storage keys are generated here (random, never derived from the user's file name); a user's
  file name is kept only as a label, stripped of path parts and of control and bidirectional
  characters (so ``invoice\u202egpj.exe`` cannot pose as ``invoice.jpg``);
- archives are read member by member with the same name rules, symlink members refused, and
  the bytes actually written counted against a limit (declared sizes can lie), which stops
  zip-slip and decompression bombs.
"""

from __future__ import annotations

import os
import re
import stat
import unicodedata
import uuid
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from urllib.parse import unquote

from config.errors import PayloadTooLarge, ValidationFailed

MAX_NAME_CHARS = 1024
_DRIVE = re.compile(r"^[A-Za-z]:")
_SUFFIX = re.compile(r"^\.[A-Za-z0-9][A-Za-z0-9._-]{0,15}$")


class UnsafePath(ValidationFailed):
    code = "unsafe_path"


def _refuse(name: str, why: str):
    raise UnsafePath(f"refused path {name[:200]!r}: {why}")


def _fully_decoded(name: str) -> str:
    previous, current = None, name
    for _ in range(4):  # %252e%252e is %2e%2e is ..
        previous, current = current, unquote(current)
        if current == previous:
            break
    return current


def safe_relative(name: str) -> PurePosixPath:
    """A user-supplied relative name, validated; the result never leaves its root."""
    if not isinstance(name, str) or not name.strip():
        _refuse(str(name), "empty name")
    if len(name) > MAX_NAME_CHARS:
        _refuse(name, f"longer than {MAX_NAME_CHARS} characters")
    decoded = _fully_decoded(name)
    if decoded != name and any(s in decoded for s in ("..", "/", "\\", "\x00", ":")):
        _refuse(name, "percent-encoded path characters")
    if any(unicodedata.category(c) == "Cc" for c in name):
        _refuse(name, "NUL or control character")
    if "\\" in name:
        _refuse(name, "backslash (Windows path separator)")
    if name.startswith("/") or _DRIVE.match(name) or name.startswith("//"):
        _refuse(name, "absolute path")
    parts = PurePosixPath(name).parts
    if any(part == ".." for part in parts):
        _refuse(name, "'..' climbs out of the folder")
    parts = [p for p in parts if p != "."]
    if not parts:
        _refuse(name, "names no file")
    return PurePosixPath(*parts)


def _no_symlinks_between(root: Path, path: Path) -> None:
    current = root
    for part in path.relative_to(root).parts:
        current = current / part
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            return  # the rest does not exist yet: nothing there to follow
        if stat.S_ISLNK(mode):
            _refuse(str(path.relative_to(root)), "symbolic link in the path")


def safe_join(root: Path | str, name: str) -> Path:
    """``root / name`` for a user-supplied ``name``, refused if it could land outside ``root``."""
    root = Path(root).resolve()
    path = root / safe_relative(name)
    _no_symlinks_between(root, path)
    resolved = path.resolve()
    if resolved != root and root not in resolved.parents:
        _refuse(name, "resolves outside its folder")
    return path


def ensure_within(root: Path | str, path: Path | str) -> Path:
    """A server-side path (read back from a record) that must still lie inside ``root``."""
    root, path = Path(root).resolve(), Path(path)
    if not path.is_absolute():
        return safe_join(root, str(path))
    absolute = Path(os.path.abspath(path))
    if absolute != root and root not in absolute.parents:
        _refuse(str(path), f"outside {root}")
    _no_symlinks_between(root, absolute)
    return absolute


class FolderNotAllowed(UnsafePath):
    """A model folder outside the rule; ``reason`` says which part, for a form field."""

    code = "folder_not_allowed"

    def __init__(self, path: str, reason: str):
        super().__init__(f"refused folder {path[:200]!r}: {reason}")
        self.reason = reason


def model_roots() -> list[Path]:
    """The folders a model may be named from: ``settings.TANDEM_MODEL_ROOTS``."""
    from django.conf import settings

    return [Path(root) for root in settings.TANDEM_MODEL_ROOTS]


def allowed_model_folder(path: Path | str, *, roots=None, refuse=None) -> Path:
    """The one rule for a model folder a user names (a model registered over HTTP, a run's
    base, reward, reference or value model): an absolute path, inside one of the model roots
    (``roots``, default ``model_roots()``) with no symbolic link on the way from the root, an
    existing folder, and no link inside it pointing out of that root (or the registry would
    hash and serve, and a run would load, a file from anywhere the server can read). Returns
    the folder, resolved. Refused with ``FolderNotAllowed``, whose ``reason`` names the rule.

    ``refuse(folder) -> reason | None`` is asked before anything inside the folder is read
    (another project's run folder is refused without naming a file of it), and the walk stops
    at ``TANDEM_MODEL_FOLDER_MAX_FILES`` entries: a huge tree is refused by its count.
    """
    from django.conf import settings

    text = str(path)
    if "\x00" in text:
        raise FolderNotAllowed(text, "is not a valid folder path")
    if not os.path.isabs(text):
        raise FolderNotAllowed(text, "must be an absolute folder path")
    folder = Path(os.path.abspath(text))
    roots = model_roots() if roots is None else [Path(r) for r in roots]
    # A root may itself be (or sit behind) a link: the folder is matched against the root as
    # written and as resolved, and only the part below the root must be free of links.
    root = next(
        (
            candidate
            for r in roots
            for candidate in (Path(os.path.abspath(r)), Path(r).resolve())
            if folder == candidate or candidate in folder.parents
        ),
        None,
    )
    if root is None:
        raise FolderNotAllowed(text, f"must be a folder under {', '.join(str(r) for r in roots)}")
    try:
        _no_symlinks_between(root, folder)
    except UnsafePath:
        raise FolderNotAllowed(text, "has a symbolic link on its way from the model root") from None
    if not folder.is_dir():
        raise FolderNotAllowed(text, "no such folder")
    reason = refuse(folder) if refuse is not None else None
    if reason:
        raise FolderNotAllowed(text, reason)
    inside = root.resolve()
    max_entries, seen = settings.TANDEM_MODEL_FOLDER_MAX_FILES, 0
    for dirpath, dirnames, filenames in os.walk(folder):
        seen += len(dirnames) + len(filenames)
        if seen > max_entries:
            raise FolderNotAllowed(
                text,
                f"holds more than {max_entries} files and folders (a model folder holds "
                "its weights, config and tokenizer)",
            )
        for entry in (*dirnames, *filenames):
            link = Path(dirpath) / entry
            if link.is_symlink() and not link.resolve().is_relative_to(inside):
                raise FolderNotAllowed(
                    text, f"holds a symbolic link out of its model root: {link.relative_to(folder)}"
                )
    return folder.resolve()


def storage_key(*, kind: str, suffix: str = "") -> str:
    """A server-chosen key for a stored file; the user's file name never becomes a path."""
    if not re.fullmatch(r"[a-z][a-z0-9_-]{0,31}", kind):
        raise ValueError(f"bad storage kind {kind!r}")
    if suffix and not _SUFFIX.match(suffix):
        suffix = ""
    return f"{kind}/{uuid.uuid4().hex}{suffix.lower()}"


def display_filename(name: str, *, default: str = "upload") -> str:
    """A user's file name as a label: last path part only, no control or bidi characters."""
    name = str(name or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if unicodedata.category(c) not in ("Cc", "Cf", "Zl", "Zp"))
    name = name.strip().lstrip(".") or default
    return name[:255]


def bounded_gunzip(data: bytes, *, max_bytes: int, max_ratio: int = 200) -> bytes:
    """Decompress gzip data, stopping as soon as the output passes ``max_bytes`` or
    ``max_ratio`` times the input (a decompression bomb), whichever is smaller."""
    limit = min(max_bytes, max(len(data), 1) * max_ratio)
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = bytearray()
    chunk = data
    while chunk:
        out += inflater.decompress(chunk, limit + 1 - len(out))
        if len(out) > limit:
            raise PayloadTooLarge(
                f"the compressed file expands past {limit} bytes (limit {max_bytes} bytes, "
                f"or {max_ratio}x its size); refused as a possible decompression bomb",
                code="decompression_bomb",
            )
        chunk = inflater.unconsumed_tail
    if not inflater.eof:
        raise ValidationFailed("the gzip file is truncated", code="bad_archive")
    return bytes(out)


def safe_extract_zip(
    archive: Path | str,
    dest: Path | str,
    *,
    max_members: int = 10_000,
    max_total_bytes: int = 1 << 30,
    max_ratio: int = 200,
) -> list[Path]:
    """Extract a zip archive into ``dest`` without zip-slip, links or bombs."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    try:
        with zipfile.ZipFile(archive) as zf:
            _extract_members(zf, dest, written, max_members, max_total_bytes, max_ratio)
    except BaseException:
        for path in written:  # all or nothing: a refused archive leaves no files behind
            path.unlink(missing_ok=True)
        raise
    return written


def _extract_members(zf, dest, written, max_members, max_total_bytes, max_ratio) -> None:
    members = zf.infolist()
    if len(members) > max_members:
        raise PayloadTooLarge(f"the archive holds more than {max_members} files")
    total = 0
    for info in members:
        if stat.S_ISLNK(info.external_attr >> 16):
            _refuse(info.filename, "symbolic link inside the archive")
        target = safe_join(dest, info.filename)
        if info.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        if info.file_size > max(info.compress_size, 1) * max_ratio:
            raise PayloadTooLarge(
                f"{info.filename!r} expands {info.file_size // max(info.compress_size, 1)}x;"
                " refused as a possible decompression bomb",
                code="decompression_bomb",
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(info) as src, open(target, "xb") as out:
            written.append(target)
            while block := src.read(1 << 16):
                total += len(block)
                if total > max_total_bytes:
                    raise PayloadTooLarge(
                        f"the archive expands past {max_total_bytes} bytes",
                        code="decompression_bomb",
                    )
                out.write(block)
