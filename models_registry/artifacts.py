"""Read a model folder without loading it: files with sha256, architecture, chat template hash.

Framework-free (no Django, no torch): registration calls this before writing anything, and the
same checks decide what a folder may be registered as.

Safety rules:
- weights must be safetensors (``*.safetensors``); pickle files (``.bin``, ``.pt``, ``.pth``,
  ``.ckpt``, ``.pkl``) are never recorded as artifacts, so nothing the registry hands out can
  be unpickled. A folder whose only weights are pickles is refused.
- a ``config.json`` asking for custom code (``auto_map``) is refused: ``trust_remote_code``
  stays off everywhere, so such a model could not be loaded faithfully anyway.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from rlhf.training.provenance import chat_template_sha256, sha256_file

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
)
CONFIG_FILES = ("config.json", "generation_config.json", "adapter_config.json")


class UnsafeModelFolder(ValueError):
    """The folder cannot be registered; the message says why."""


@dataclass(frozen=True)
class FileRecord:
    path: str  # relative to the folder, with forward slashes
    role: str  # weights | adapter | tokenizer | config | other
    sha256: str
    size_bytes: int


@dataclass(frozen=True)
class FolderInspection:
    folder: Path
    files: list[FileRecord]
    architecture: str
    backbone: str
    is_adapter: bool
    adapter_base: str | None
    """For an adapter: base_model_name_or_path from adapter_config.json."""
    chat_template_sha256: str
    ignored: list[str] = field(default_factory=list)
    """Files not recorded (pickles), named so the audit log can show them."""
    num_labels: int | None = None


def file_role(relative: str) -> str:
    name = relative.rsplit("/", 1)[-1]
    if name.startswith("adapter_model") and name.endswith(".safetensors"):
        return "adapter"
    if name.endswith(".safetensors"):
        return "weights"
    if name in TOKENIZER_FILES:
        return "tokenizer"
    if name in CONFIG_FILES:
        return "config"
    return "other"


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UnsafeModelFolder(f"{path.name} is not readable JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise UnsafeModelFolder(f"{path.name} is not a JSON object")
    return value


def _bounded_file_list(folder: Path, *, max_files: int | None, max_bytes: int | None):
    """The folder's files, listed (sizes read, nothing hashed) and refused by their count or
    total size before any file is read: hashing a huge tree only to refuse it is a request
    that holds a worker for hours. The refusal names counts, never files."""
    paths, total = [], 0
    for path in folder.rglob("*"):
        if not path.is_file():
            continue
        paths.append(path)
        if max_files is not None and len(paths) > max_files:
            raise UnsafeModelFolder(f"the folder holds more than {max_files} files")
        total += path.stat().st_size
        if max_bytes is not None and total > max_bytes:
            raise UnsafeModelFolder(f"the folder holds more than {max_bytes} bytes")
    return sorted(paths)


def inspect_model_folder(
    folder: Path, *, max_files: int | None = None, max_bytes: int | None = None
) -> FolderInspection:
    """The folder's files and what they are. ``max_files``/``max_bytes`` (None: no limit)
    refuse a folder by its size before a single file is hashed."""
    folder = Path(folder).resolve()
    if not folder.is_dir():
        raise UnsafeModelFolder(f"{folder} is not a folder")
    records: list[FileRecord] = []
    ignored: list[str] = []
    for path in _bounded_file_list(folder, max_files=max_files, max_bytes=max_bytes):
        relative = path.relative_to(folder).as_posix()
        if relative.startswith(".") or "/." in relative:
            continue  # hidden files (editor and VCS state) are not part of a model
        if path.is_symlink() and not path.resolve().is_relative_to(folder):
            raise UnsafeModelFolder(f"{relative} links outside the folder")
        if path.suffix in PICKLE_SUFFIXES:
            ignored.append(relative)
            continue
        records.append(
            FileRecord(
                path=relative,
                role=file_role(relative),
                sha256=sha256_file(path),
                size_bytes=path.stat().st_size,
            )
        )
    roles = {r.role for r in records}
    is_adapter = (folder / "adapter_config.json").is_file()
    adapter_base = None
    if is_adapter:
        if "adapter" not in roles:
            raise UnsafeModelFolder("an adapter folder needs adapter_model.safetensors")
        adapter_config = _read_json(folder / "adapter_config.json")
        adapter_base = adapter_config.get("base_model_name_or_path")
        model_config = {}
        if (folder / "config.json").is_file():
            model_config = _read_json(folder / "config.json")
    else:
        if "weights" not in roles:
            what = f" (only pickle files: {', '.join(ignored)})" if ignored else ""
            raise UnsafeModelFolder(f"{folder} holds no safetensors weights{what}")
        if not (folder / "config.json").is_file():
            raise UnsafeModelFolder(f"{folder} has no config.json")
        model_config = _read_json(folder / "config.json")
    if model_config.get("auto_map"):
        raise UnsafeModelFolder(
            "config.json asks for custom code (auto_map); trust_remote_code is off in Tandem"
        )
    architectures = model_config.get("architectures") or []
    return FolderInspection(
        folder=folder,
        files=records,
        architecture=architectures[0] if architectures else ("PeftAdapter" if is_adapter else ""),
        backbone=str(model_config.get("model_type", "")),
        is_adapter=is_adapter,
        adapter_base=adapter_base,
        chat_template_sha256=chat_template_sha256(folder),
        ignored=ignored,
        num_labels=len(model_config["id2label"]) if "id2label" in model_config else None,
    )


def verify_files(folder: Path, expected: dict[str, str]) -> list[str]:
    """Paths whose current sha256 differs from ``expected`` (missing files included)."""
    folder = Path(folder)
    mismatched = []
    for relative, sha in sorted(expected.items()):
        path = folder / relative
        if not path.is_file() or sha256_file(path) != sha:
            mismatched.append(relative)
    return mismatched
