"""Files and paths from outside: traversal, links, archives and bombs are refused, clearly.

``config/safepaths.py`` is the one gate; the import endpoint is today's entry point that
takes files. (Model registration from a local folder and artifact paths use the same gate as
they land: see the module's docstring.)
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import zipfile
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from annotation import services
from annotation.models import ImportBatch
from config.errors import PayloadTooLarge
from config.safepaths import (
    UnsafePath,
    bounded_gunzip,
    display_filename,
    ensure_within,
    safe_extract_zip,
    safe_join,
    safe_relative,
    storage_key,
)
from tests.security.routes import http_routes
from tests.security.world import changed_tables, db_checksum

TRAVERSALS = [
    "../etc/passwd",
    "a/../../etc/passwd",
    "..",
    "/etc/passwd",
    "//server/share/x",
    "C:\\Windows\\system.ini",
    "c:/windows/system.ini",
    "..\\..\\boot.ini",
    "weights\\model.bin",
    "%2e%2e/etc/passwd",
    "%2e%2e%2fetc%2fpasswd",
    "%252e%252e%252fetc",
    "..%2fetc",
    "..%5c..%5cboot.ini",
    "model.safetensors\x00.txt",
    "model%00.safetensors",
    "a/\x1b[31mred",
    "",
]


@pytest.mark.parametrize("name", TRAVERSALS)
def test_path_traversal_in_artifact_paths_is_refused_with_the_rule_named(name):
    with pytest.raises(UnsafePath) as refused:
        safe_relative(name)
    assert refused.value.code == "unsafe_path"
    assert "refused path" in refused.value.message


@pytest.mark.parametrize(
    ("name", "expected"),
    [("model.safetensors", "model.safetensors"), ("./a/b.json", "a/b.json"), ("a//b", "a/b")],
)
def test_ordinary_relative_names_are_accepted(name, expected):
    assert str(safe_relative(name)) == expected


def test_a_symlink_on_the_way_is_refused_even_when_it_points_inside(tmp_path):
    root = tmp_path / "artifacts"
    (root / "run1").mkdir(parents=True)
    (root / "escape").symlink_to("/etc")
    (root / "alias").symlink_to(root / "run1")
    with pytest.raises(UnsafePath, match="symbolic link"):
        safe_join(root, "escape/passwd")
    with pytest.raises(UnsafePath, match="symbolic link"):
        safe_join(root, "alias/weights.safetensors")
    assert (
        safe_join(root, "run1/weights.safetensors") == root.resolve() / "run1/weights.safetensors"
    )


def test_a_stored_path_outside_its_root_is_refused(tmp_path):
    root = tmp_path / "artifacts"
    root.mkdir()
    with pytest.raises(UnsafePath):
        ensure_within(root, "/etc/passwd")
    with pytest.raises(UnsafePath):
        ensure_within(root, str(root / ".." / "other"))
    assert ensure_within(root, root / "x") == root.resolve() / "x"


def _zip(members: dict, *, symlink: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo("link")
            info.external_attr = (0o120777 << 16) | 0
            zf.writestr(info, symlink)
    return buffer.getvalue()


def test_zip_slip_archive_is_refused_and_writes_nothing(tmp_path):
    archive = tmp_path / "a.zip"
    archive.write_bytes(_zip({"ok.txt": b"fine", "../../evil.txt": b"pwned"}))
    dest = tmp_path / "out"
    with pytest.raises(UnsafePath, match="climbs out"):
        safe_extract_zip(archive, dest)
    assert not (tmp_path / "evil.txt").exists()
    assert list(dest.rglob("*")) == []  # all or nothing


def test_symlink_inside_an_archive_is_refused(tmp_path):
    archive = tmp_path / "a.zip"
    archive.write_bytes(_zip({"ok.txt": b"fine"}, symlink="/etc/passwd"))
    with pytest.raises(UnsafePath, match="symbolic link"):
        safe_extract_zip(archive, tmp_path / "out")


def test_decompression_bomb_archive_is_refused(tmp_path):
    archive = tmp_path / "bomb.zip"
    archive.write_bytes(_zip({"zeros.bin": b"\0" * (20 << 20)}))
    with pytest.raises(PayloadTooLarge) as refused:
        safe_extract_zip(archive, tmp_path / "out")
    assert refused.value.code == "decompression_bomb"
    with pytest.raises(PayloadTooLarge):
        safe_extract_zip(archive, tmp_path / "out2", max_ratio=10**6, max_total_bytes=1 << 20)
    assert not (tmp_path / "out2" / "zeros.bin").exists()


def test_gzip_bomb_stops_at_the_limit_without_expanding_it_all():
    bomb = gzip.compress(b"\0" * (50 << 20))  # 50 MiB of zeros in ~50 KiB
    with pytest.raises(PayloadTooLarge, match="decompression bomb"):
        bounded_gunzip(bomb, max_bytes=1 << 30, max_ratio=200)
    assert bounded_gunzip(gzip.compress(b"hello"), max_bytes=100) == b"hello"


def test_storage_keys_are_generated_by_the_server():
    keys = {storage_key(kind="imports", suffix=".jsonl") for _ in range(50)}
    assert len(keys) == 50
    assert all(k.startswith("imports/") and k.endswith(".jsonl") for k in keys)
    assert storage_key(kind="imports", suffix="/../../x").startswith("imports/")
    assert ".." not in storage_key(kind="imports", suffix="/../../x")


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("../../etc/passwd.jsonl", "passwd.jsonl"),
        ("..\\..\\windows\\evil.jsonl", "evil.jsonl"),
        ("invoice\u202elnosj.jsonl", "invoicelnosj.jsonl"),
        ("a\x00b.jsonl", "ab.jsonl"),
        ("..", "upload"),
    ],
)
def test_a_user_file_name_is_only_a_label(name, shown):
    assert display_filename(name) == shown


# Through the import endpoint: every refusal is a clear 4xx and changes nothing.


@pytest.fixture
def importer(db):
    user = get_user_model().objects.create_user("importer", password="pw", is_staff=True)
    project = services.project_create(name="Imports", created_by=user)
    client = Client()
    client.force_login(user)
    return client, project


def _upload(client, project, name: str, data: bytes):
    return client.post(
        f"/api/projects/{project.pk}/imports/",
        {"file": SimpleUploadedFile(name, data), "kind": "prompts"},
    )


ROWS = b'{"prompt": "What is a lease?"}\n{"prompt": "Why overlap k?"}\n'


@pytest.mark.parametrize(
    ("name", "data", "status", "code"),
    [
        ("rows.zip", _zip({"rows.jsonl": ROWS}), 400, "unsupported_file"),
        ("slip.zip", _zip({"../../rows.jsonl": ROWS}), 400, "unsupported_file"),
        ("bomb.jsonl.gz", gzip.compress(b"\n" * (30 << 20)), 413, "decompression_bomb"),
        ("rows.pkl", b"\x80\x04\x95" + b"\0" * 20, 400, "unsupported_file"),
        ("rows.jsonl", b'{"prompt": "a\x00b"}\n', 400, "invalid"),
    ],
    ids=["zip", "zip-slip", "gzip-bomb", "pickle", "nul-byte"],
)
def test_hostile_uploads_are_refused_clearly_and_change_nothing(importer, name, data, status, code):
    client, project = importer
    before = db_checksum()
    response = _upload(client, project, name, data)
    assert response.status_code == status, response.content
    assert response.json()["error"] == code
    assert response.json()["detail"]
    assert changed_tables(before, db_checksum()) == []


def test_oversized_upload_is_refused_before_it_is_read(importer, settings):
    settings.TANDEM_MAX_IMPORT_BYTES = 1000
    client, project = importer
    before = db_checksum()
    response = _upload(client, project, "big.jsonl", ROWS * 100)
    assert response.status_code == 413
    assert response.json()["error"] == "too_large"
    assert changed_tables(before, db_checksum()) == []


def test_traversal_in_an_upload_name_never_becomes_a_path(importer, tmp_path, monkeypatch):
    client, project = importer
    monkeypatch.chdir(tmp_path)
    response = _upload(client, project, "../../../tmp/evil.jsonl.gz", gzip.compress(ROWS))
    assert response.status_code == 201, response.content
    batch = ImportBatch.objects.get(pk=response.json()["id"])
    assert batch.filename == "evil.jsonl"
    assert batch.rows == 2
    assert list(Path(tmp_path).iterdir()) == []
    assert not os.path.exists("/tmp/evil.jsonl")


def test_registering_a_model_from_a_folder_outside_the_allowed_roots_is_refused(
    importer, tmp_path, settings
):
    """An engineer names a folder on the server; only TANDEM_MODEL_ROOTS may be read
    (else any folder the server can read, another project's artifacts included, becomes a
    "model")."""
    assert any(r.name == "api-model-register" for r in http_routes())
    from rlhf.training.base_models import build_tiny_causal_lm

    client, project = importer
    settings.TANDEM_MODEL_ROOTS = [tmp_path / "allowed"]
    outside = build_tiny_causal_lm(tmp_path / "elsewhere", seed=0)
    before = db_checksum()
    for folder in (str(outside), str(tmp_path / "allowed" / ".." / "elsewhere"), "/etc"):
        for route in ("register", "base"):
            response = client.post(
                f"/api/projects/{project.pk}/models/{route}/",
                {"folder": folder, "name": "smuggled"},
                content_type="application/json",
            )
            assert response.status_code == 400, (route, folder, response.content)
    assert changed_tables(before, db_checksum()) == []


@pytest.mark.parametrize(
    "path",
    [
        "../../../../etc/passwd",
        "%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "%252e%252e%252fetc%252fpasswd",
        "weights.safetensors/../../../etc/passwd",
        "..%5c..%5cetc%5cpasswd",
        "/etc/passwd",
        "weights.safetensors%00.txt",
    ],
)
def test_path_traversal_in_artifact_paths_of_a_training_run_is_a_404(world, db, path):
    """MLflow served artifact paths with '..'; a run's artifact route must serve only the
    files it recorded."""
    ids = world.ids("own", "admin")
    client = Client()
    client.force_login(world.users["admin"])
    response = client.get(f"/api/runs/{ids['run_id']}/artifacts/{path}")
    assert response.status_code in (400, 404)
    assert b"root:" not in b"".join(getattr(response, "streaming_content", [response.content]))
    ok = client.get(f"/api/runs/{ids['run_id']}/artifacts/{ids['path']}")
    assert ok.status_code == 200
    assert b"".join(ok.streaming_content) == b"weights"


def test_a_model_folder_is_registered_over_http_only_inside_the_model_roots(
    importer, tmp_path, settings
):
    """The model-folder rule production applies (``config.safepaths.allowed_model_folder``),
    on the registry's routes, under the one setting runs also launch from
    (TANDEM_MODEL_ROOTS): inside is registered; outside, relative, climbing out, or holding a
    link to a file outside is a 400 and writes nothing."""
    from rlhf.training.base_models import build_tiny_causal_lm

    client, project = importer
    allowed = tmp_path / "models"
    settings.TANDEM_MODEL_ROOTS = [allowed]
    good = allowed / "policy-v1"
    build_tiny_causal_lm(good, seed=0)
    secret = tmp_path / "secret.json"
    secret.write_text('{"api_key": "do not serve"}')
    linked = allowed / "linked"
    shutil.copytree(good, linked)
    (linked / "notes.json").symlink_to(secret)

    def register(route, folder):
        return client.post(
            f"/api/projects/{project.pk}/models/{route}/",
            {"folder": str(folder), "name": f"m{route}"},
            content_type="application/json",
        )

    before = db_checksum()
    for folder in ("/etc", f"{good}/../../..", linked, "policy-v1"):
        for route in ("register", "base"):
            refused = register(route, folder)
            assert refused.status_code == 400, (route, folder, refused.content)
            assert refused.json()["error"] == "folder_not_allowed", (route, folder)
    assert changed_tables(before, db_checksum()) == []
    for route in ("base", "register"):
        assert register(route, good).status_code == 201


def test_the_deprecated_registry_roots_setting_is_still_read(tmp_path):
    """TANDEM_MODEL_IMPORT_ROOTS (the registry's former list) adds its folders to the one
    list, TANDEM_MODEL_ROOTS, so a deployment that set it keeps registering from them."""
    import subprocess
    import sys

    env = {
        **os.environ,
        "TANDEM_MODEL_ROOTS": "/srv/models",
        "TANDEM_MODEL_IMPORT_ROOTS": f"/srv/old-models{os.pathsep}/srv/more",
    }
    out = subprocess.run(
        [sys.executable, "-c", "import config.settings as s; print(*s.TANDEM_MODEL_ROOTS)"],
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split() == ["/srv/models", "/srv/old-models", "/srv/more"]
