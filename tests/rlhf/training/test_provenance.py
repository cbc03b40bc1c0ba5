"""Provenance: one code version, one set of library keys, one file hash, one template hash."""

import hashlib
import json

import pytest

from rlhf.training import provenance
from rlhf.training.provenance import (
    LIBRARIES,
    UNKNOWN_CODE_VERSION,
    chat_template_sha256,
    code_version,
    library_versions,
    sha256_file,
)


def test_code_version_is_the_override_else_the_commit_else_unknown(monkeypatch):
    monkeypatch.setenv("TANDEM_CODE_VERSION", "v" * 80)
    assert code_version() == "v" * 64  # the width of every code_version column

    monkeypatch.delenv("TANDEM_CODE_VERSION")
    # a git checkout records its commit (a copy without .git records "unknown")
    assert code_version() == (provenance._git_head() or UNKNOWN_CODE_VERSION)

    monkeypatch.setattr(provenance, "_git_head", lambda: "")
    assert code_version() == UNKNOWN_CODE_VERSION == "unknown"


def test_library_versions_always_have_the_same_keys(monkeypatch):
    # given one library that is not installed
    real = provenance.importlib.metadata.version

    def version(name):
        if name == "peft":
            raise provenance.importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(provenance.importlib.metadata, "version", version)

    versions = library_versions()

    # then every library has its key; the missing one is None, not left out
    assert list(versions) == ["python", *LIBRARIES]
    assert versions["peft"] is None
    assert versions["torch"].startswith("2.")


def test_sha256_file_reads_in_chunks(tmp_path):
    path = tmp_path / "weights.safetensors"
    data = bytes(range(256)) * 1000
    path.write_bytes(data)
    assert sha256_file(path, chunk_bytes=1000) == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    ("files", "template"),
    [
        ({"chat_template.jinja": "{{ jinja }}", "tokenizer_config.json": '{"chat_template": "x"}'},
         "{{ jinja }}"),
        ({"tokenizer_config.json": json.dumps({"chat_template": "{{ tc }}"})}, "{{ tc }}"),
        ({"tokenizer_config.json": json.dumps({"chat_template": [{"name": "d", "template": "t"}]})},
         json.dumps([{"name": "d", "template": "t"}], sort_keys=True)),
        ({"tokenizer_config.json": "{}"}, None),
        ({}, None),
    ],
)  # fmt: skip
def test_chat_template_hash(tmp_path, files, template):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    expected = hashlib.sha256(template.encode()).hexdigest() if template else ""
    assert chat_template_sha256(tmp_path) == expected
