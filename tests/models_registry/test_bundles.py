"""Export bundles: merged or adapter weights with tokenizer, card, lineage and a sha256 manifest,
written by ``manage.py models export`` or built by a job and downloaded as a resumable tar."""

import io
import json
import shutil
import subprocess
import tarfile
from io import StringIO

import pytest
import torch
from django.core.management import CommandError, call_command
from django.urls import reverse
from rest_framework.test import APIClient

from annotation.audit import DataAuditEvent
from annotation.roles import Role
from config.downloads import TarLayout
from config.safepaths import FolderNotAllowed, allowed_model_folder
from models_registry import bundles, services
from models_registry.models import VersionKind
from tests.rlhf.conftest import IMMEDIATE_TASKS

pytestmark = pytest.mark.django_db

BUNDLE_FILES_OF_A_POLICY = {
    "MANIFEST.sha256",
    "README.md",
    "chat_template.jinja",
    "config.json",
    "generation_config.json",
    "lineage.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
}


@pytest.fixture(autouse=True)
def bundle_settings(settings, tmp_path):
    settings.TANDEM_ARTIFACT_ROOT = tmp_path / "artifacts"
    settings.TANDEM_BUNDLE_ROOT = tmp_path / "bundles"
    settings.TANDEM_MODEL_ROOTS = [settings.TANDEM_ARTIFACT_ROOT, tmp_path / "models"]
    settings.TASKS = IMMEDIATE_TASKS
    return settings


@pytest.fixture(scope="session")
def tiny_adapter_dir(tiny_base_dir, tmp_path_factory):
    """A LoRA adapter with non-zero weights over the tiny base (which adapter_config names)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    out = tmp_path_factory.mktemp("tiny-lora")
    torch.manual_seed(7)
    base = AutoModelForCausalLM.from_pretrained(tiny_base_dir)
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(base, lora).save_pretrained(out)
    return out


@pytest.fixture
def lora_version(project, engineer, base_version, tiny_adapter_dir):
    return services.model_version_register(
        project=project,
        folder=tiny_adapter_dir,
        name="tiny-lora",
        kind=VersionKind.POLICY,
        registered_by=engineer,
        parent=base_version,
        launched_by=engineer,
    )


def export(*args, stderr=None):
    out = StringIO()
    call_command("models", "export", *map(str, args), stdout=out, stderr=stderr or StringIO())
    return out.getvalue()


def test_the_export_command_reports_each_step_on_stderr(base_version, tmp_path):
    err = StringIO()
    printed = export(base_version.pk, "--out", tmp_path / "out", stderr=err)
    label = base_version.label
    assert err.getvalue().splitlines() == [
        f"export {label} [weights]: 0/5 step (0%)",
        f"export {label} [tokenizer files]: 1/5 step (20%)",
        f"export {label} [model card]: 2/5 step (40%)",
        f"export {label} [lineage]: 3/5 step (60%)",
        f"export {label} [manifest]: 4/5 step (80%)",
        f"export {label} [done]: 5/5 step (100%)",
    ]
    assert printed.startswith(f"{label}: full bundle in ")


def sha256sum_check(folder):
    return subprocess.run(
        ["sha256sum", "--strict", "-c", "MANIFEST.sha256"],
        cwd=folder,
        capture_output=True,
        text=True,
        check=False,
    )


def client_for(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


def body_of(response) -> bytes:
    return b"".join(response.streaming_content)


# --------------------------------------------------------------------------- building


def test_a_full_version_exports_its_files_card_lineage_and_a_checkable_manifest(
    base_version, admin_user, tiny_base_dir, tmp_path
):
    # when the approved base model is exported from the terminal
    out = tmp_path / "bundle"
    printed = export(base_version.pk, "--out", out, "--as", admin_user.username)

    # then the folder holds everything a runtime needs, and sha256sum agrees with the manifest
    assert "full bundle" in printed
    assert {p.name for p in out.iterdir()} == BUNDLE_FILES_OF_A_POLICY
    check = sha256sum_check(out)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.count(": OK") == len(BUNDLE_FILES_OF_A_POLICY) - 1
    assert (out / "model.safetensors").read_bytes() == (
        tiny_base_dir / "model.safetensors"
    ).read_bytes()
    assert "<|im_start|>" in (out / "chat_template.jinja").read_text()
    lineage = json.loads((out / "lineage.json").read_text())
    assert lineage["version"]["label"] == "tiny-base v1"
    assert lineage["version"]["state"] == "approved"
    assert lineage["version"]["aliases"] == ["champion"]
    assert lineage["bundle"]["mode"] == "full"
    assert (out / "README.md").read_text().startswith("# tiny-base v1")
    # and the export is in the data audit log, naming who took it
    event = DataAuditEvent.objects.get(action="model_bundle_downloaded")
    assert (event.actor, event.subject) == (admin_user, f"model:{base_version.pk}:full")
    assert event.details["via"] == "command"


def test_a_lora_version_exports_merged_weights_that_match_base_plus_adapter(
    lora_version, tiny_base_dir, tiny_adapter_dir, tmp_path
):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # when the adapter version is exported (merged, the default)
    out = tmp_path / "merged"
    assert "merged bundle" in export(lora_version.pk, "--out", out)

    # then the bundle is a plain model (no adapter files) whose logits are base + adapter's
    assert {p.name for p in out.iterdir()} == BUNDLE_FILES_OF_A_POLICY
    assert sha256sum_check(out).returncode == 0
    merged = AutoModelForCausalLM.from_pretrained(out, use_safetensors=True)
    reference = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_base_dir), tiny_adapter_dir
    )
    base = AutoModelForCausalLM.from_pretrained(tiny_base_dir)
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.inference_mode():
        merged_logits = merged(ids).logits  # (1, 5, vocab)
        adapter_logits = reference(ids).logits
        base_logits = base(ids).logits
    torch.testing.assert_close(merged_logits, adapter_logits, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(merged_logits, base_logits, atol=1e-3)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    lineage = json.loads((out / "lineage.json").read_text())
    assert lineage["bundle"]["mode"] == "merged"
    assert lineage["base_model"]["label"] == "tiny-base v1"
    assert [p["label"] for p in lineage["parents"]] == ["tiny-base v1"]


def test_a_lora_version_exports_the_adapter_alone_on_request(lora_version, tmp_path):
    out = tmp_path / "adapter"
    assert "adapter bundle" in export(lora_version.pk, "--out", out, "--adapter-only")

    names = {p.name for p in out.iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "tokenizer.json"} <= names
    assert "model.safetensors" not in names
    assert sha256sum_check(out).returncode == 0
    assert json.loads((out / "lineage.json").read_text())["bundle"]["mode"] == "adapter"


def test_adapter_only_is_refused_for_a_full_version_and_nothing_is_written(base_version, tmp_path):
    with pytest.raises(CommandError, match="not_an_adapter"):
        export(base_version.pk, "--out", tmp_path / "x", "--adapter-only")
    assert not (tmp_path / "x").exists()
    assert not DataAuditEvent.objects.exists()


def test_a_version_whose_files_changed_since_registration_is_not_exported(
    project, admin_user, tiny_base_dir, tmp_path
):
    # given a registered model whose weights were overwritten afterwards
    folder = tmp_path / "model"
    shutil.copytree(tiny_base_dir, folder)
    version = services.model_version_register_base(
        project=project, registered_by=admin_user, folder=folder, name="drifted"
    )
    with open(folder / "model.safetensors", "r+b") as fh:
        fh.seek(-4, 2)
        fh.write(b"\xff\xff\xff\xff")

    # then the export is refused, naming the file
    with pytest.raises(CommandError, match=r"artifacts_changed.*model\.safetensors"):
        export(version.pk, "--out", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not DataAuditEvent.objects.exists()


# --------------------------------------------------------------------------- the tar


def test_the_streamed_tar_is_byte_for_byte_what_tarfile_writes(base_version, tmp_path):
    folder = bundles.model_version_bundle(version=base_version, out_dir=tmp_path / "b")
    layout = TarLayout(folder, prefix="tiny-base-v1")

    expected = io.BytesIO()
    with tarfile.open(fileobj=expected, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            info = tarfile.TarInfo(f"tiny-base-v1/{path.name}")
            info.size = path.stat().st_size
            info.mtime = int(path.stat().st_mtime)
            info.mode = 0o644
            info.uname = info.gname = ""
            with open(path, "rb") as fh:
                tar.addfile(info, fh)

    assert layout.size == len(expected.getvalue())
    assert b"".join(layout.read_range(0, layout.size - 1)) == expected.getvalue()
    assert b"".join(layout.read_range(700, 5000)) == expected.getvalue()[700:5001]


# --------------------------------------------------------------------------- over HTTP


def test_an_approved_bundle_is_built_then_downloaded_and_resumed_with_range(
    base_version, reviewer, tmp_path, django_capture_on_commit_callbacks
):
    url = reverse("api-model-bundle", args=[base_version.pk])
    client = client_for(reviewer)

    # given no bundle yet: a download says so, and a POST builds it in the worker
    missing = client.get(url)
    assert missing.status_code == 409
    assert (missing.json()["error"], missing.json()["status"]) == ("bundle_not_ready", "missing")
    with django_capture_on_commit_callbacks(execute=True):
        queued = client.post(url, {}, format="json")
    assert queued.status_code == 202
    assert client.post(url, {}, format="json").json()["status"] == "ready"
    # (stored outside the model roots: no project can register it as a model folder)
    stored = bundles.model_version_bundle_status(version=base_version, adapter_only=False)
    with pytest.raises(FolderNotAllowed):
        allowed_model_folder(stored.folder)

    # when it is downloaded whole
    full = client.get(url)
    assert full.status_code == 200
    assert full["Content-Type"] == "application/x-tar"
    assert full["Accept-Ranges"] == "bytes"
    whole = body_of(full)
    assert int(full["Content-Length"]) == len(whole)

    # then it unpacks to a bundle whose manifest checks
    with tarfile.open(fileobj=io.BytesIO(whole)) as tar:
        tar.extractall(tmp_path / "got", filter="data")
    unpacked = tmp_path / "got" / "tiny-base-v1"
    assert {p.name for p in unpacked.iterdir()} == BUNDLE_FILES_OF_A_POLICY
    assert sha256sum_check(unpacked).returncode == 0

    # when a download stopped after 1000 bytes resumes with Range (and If-Range)
    first = client.get(url, HTTP_RANGE="bytes=0-999")
    assert first.status_code == 206
    assert first["Content-Range"] == f"bytes 0-999/{len(whole)}"
    rest = client.get(url, HTTP_RANGE="bytes=1000-", HTTP_IF_RANGE=full["ETag"])
    assert rest.status_code == 206
    assert int(rest["Content-Length"]) == len(whole) - 1000
    # then the two parts are the same bytes as the whole
    assert body_of(first) + body_of(rest) == whole

    # a range past the end is 416; an If-Range for another body sends the whole body
    past = client.get(url, HTTP_RANGE=f"bytes={len(whole)}-")
    assert past.status_code == 416
    assert past["Content-Range"] == f"bytes */{len(whole)}"
    stale = client.get(url, HTTP_RANGE="bytes=1000-", HTTP_IF_RANGE='"another"')
    assert stale.status_code == 200
    assert body_of(stale) == whole

    # and every download that sent bytes is audited with its range
    events = DataAuditEvent.objects.filter(action="model_bundle_downloaded").order_by("id")
    size = len(whole)
    assert [e.details["range"] for e in events] == [
        "",  # the whole tar
        f"bytes 0-999/{size}",
        f"bytes 1000-{size - 1}/{size}",
        "",  # the If-Range for another body: the whole tar again (the 416 sent nothing)
    ]
    assert {e.actor for e in events} == {reviewer}
    assert {e.details["manifest_sha256"] for e in events} == {full["ETag"].strip('"')}


def test_outsiders_get_404_and_annotators_403_and_nothing_is_built_or_recorded(
    base_version, annotator, member, other_project
):
    outsider = member(Role.ADMIN, "olga", target=other_project)
    url = reverse("api-model-bundle", args=[base_version.pk])
    assert client_for(outsider).get(url).status_code == 404
    assert client_for(outsider).post(url, {}, format="json").status_code == 404
    assert client_for(annotator).get(url).status_code == 403
    assert client_for(annotator).post(url, {}, format="json").status_code == 403
    assert not DataAuditEvent.objects.exists()
    status = bundles.model_version_bundle_status(version=base_version, adapter_only=False)
    assert status.status == "missing"


def test_a_version_that_is_not_approved_exports_for_engineers_only(
    lora_version, engineer, reviewer, django_capture_on_commit_callbacks
):
    url = reverse("api-model-bundle", args=[lora_version.pk])
    # a reviewer may read the candidate but not take its weights
    assert client_for(reviewer).post(url, {}, format="json").status_code == 403
    assert client_for(reviewer).get(url).status_code == 403
    # its project's engineer may, merged or adapter alone
    with django_capture_on_commit_callbacks(execute=True):
        built = client_for(engineer).post(url, {"adapter_only": True}, format="json")
    assert built.status_code == 202
    assert built.json()["mode"] == "adapter"
    download = client_for(engineer).get(url, {"adapter_only": "true"})
    assert download.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(body_of(download))) as tar:
        names = tar.getnames()
    assert "tiny-lora-v1-adapter/adapter_model.safetensors" in names
    # the merged bundle is a separate build, not yet made
    assert client_for(engineer).get(url).json()["status"] == "missing"


def test_bad_input_is_a_400_naming_the_field(base_version, engineer):
    url = reverse("api-model-bundle", args=[base_version.pk])
    bad = client_for(engineer).get(url, {"adapter_only": "perhaps"})
    assert bad.status_code == 400
    assert "adapter_only" in bad.json()
    refused = client_for(engineer).post(url, {"adapter_only": True}, format="json")
    assert refused.status_code == 400
    assert refused.json()["error"] == "not_an_adapter"
    assert "adapter_only" in refused.json()["fields"]


def test_a_failed_build_is_reported_and_retried_on_request(
    project, admin_user, tiny_base_dir, tmp_path, django_capture_on_commit_callbacks
):
    folder = tmp_path / "model"
    shutil.copytree(tiny_base_dir, folder)
    version = services.model_version_register_base(
        project=project, registered_by=admin_user, folder=folder, name="drifted"
    )
    (folder / "config.json").write_text("{}")
    url = reverse("api-model-bundle", args=[version.pk])
    with django_capture_on_commit_callbacks(execute=True):
        client_for(admin_user).post(url, {}, format="json")
    failed = client_for(admin_user).get(url)
    assert failed.status_code == 409
    assert failed.json()["status"] == "failed"
    assert "config.json" in failed.json()["detail"]
    assert not DataAuditEvent.objects.exists()
