"""Where a record came from: the code, the libraries, the files and the chat template.

One definition for every record that carries provenance (snapshots, training runs, model
versions, checkpoints, artifacts), so two records of the same code and libraries say the same
thing. No Django: the engine, the data pipeline and the registry's folder inspection all call
it; the repository root is found from this file, not from settings.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
from pathlib import Path

# What an unknown code version is recorded as (no TANDEM_CODE_VERSION, no git checkout).
UNKNOWN_CODE_VERSION = "unknown"
# The width of the code_version columns.
CODE_VERSION_MAX_CHARS = 64
# Every library_versions() record has exactly these keys (plus "python"); a library that is not
# installed is recorded as None, so records stay comparable key by key.
LIBRARIES = (
    "torch",
    "transformers",
    "trl",
    "peft",
    "accelerate",
    "datasets",
    "safetensors",
    "tokenizers",
)
REPOSITORY_ROOT = Path(__file__).resolve().parents[2]


def code_version() -> str:
    """``TANDEM_CODE_VERSION`` if set, else the git commit of the running code, else
    ``UNKNOWN_CODE_VERSION``; at most ``CODE_VERSION_MAX_CHARS`` characters."""
    override = os.environ.get("TANDEM_CODE_VERSION")
    return (override or _git_head() or UNKNOWN_CODE_VERSION)[:CODE_VERSION_MAX_CHARS]


@functools.cache
def _git_head() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],  # noqa: S607 (git from PATH, no user input)
            cwd=REPOSITORY_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()


def library_versions() -> dict[str, str | None]:
    """{"python": ..., each of LIBRARIES: its installed version or None}."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def sha256_file(path: Path | str, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def chat_template_text(folder: Path | str) -> str:
    """The tokenizer's chat template as stored (jinja file first, then tokenizer_config)."""
    folder = Path(folder)
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    config = folder / "tokenizer_config.json"
    if config.is_file():
        template = json.loads(config.read_text(encoding="utf-8")).get("chat_template")
        if isinstance(template, str):
            return template
        if isinstance(template, list):  # named templates: [{"name", "template"}]
            return json.dumps(template, sort_keys=True)
    return ""


def chat_template_sha256(folder: Path | str) -> str:
    """sha256 of the folder's chat template text, or "" when it has none."""
    template = chat_template_text(folder)
    return hashlib.sha256(template.encode()).hexdigest() if template else ""
