"""Export bundles: one folder with everything needed to run a model version elsewhere.

A bundle holds the weights in safetensors (a LoRA adapter merged into its registered base with
PEFT ``merge_and_unload``, or the adapter alone on request), the tokenizer with its chat
template, the generation config (policies), the model card as ``README.md``, ``lineage.json``
and ``MANIFEST.sha256``: the sha256 of every other file, in ``sha256sum -c`` format.

Bundles are built into ``TANDEM_BUNDLE_ROOT/version-<id>/<mode>-<stamp>`` (outside the model
roots, so no project can register another's bundle as a model folder) by the
``generation`` queue's job (``model_version_bundle_job``, enqueued on commit by
``model_version_bundle_request``) or by ``manage.py models export``. The stamp is the version's
``updated_at``: a state change (approval, say) makes the next request build a new bundle, so a
downloaded card never shows a stale state. A bundle is written to a temporary folder and renamed
into place, so a folder that exists is complete; a failed build leaves ``<folder>.error``.

Before anything is copied or merged, the version's (and its base's) recorded artifacts are
checked against their registration sha256: a changed file refuses the export.

HTTP downloads stream the bundle as an uncompressed tar assembled on the fly (``TarLayout``):
its size is known before the first byte, so it carries ``Content-Length`` and serves any byte
range without writing the tar to disk.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from annotation.audit import DataAuditAction, data_audit_record
from config.downloads import MANIFEST, TarLayout, manifest_lines
from config.errors import Conflict, ValidationFailed
from models_registry import selectors
from models_registry.models import ModelVersion, VersionKind
from models_registry.services import (
    model_version_refresh_card,
    model_version_verify_artifacts,
)
from rlhf.training.provenance import sha256_file

LINEAGE = "lineage.json"
CARD = "README.md"
COPIED_ROLES = ("weights", "adapter", "tokenizer", "config")


class BundleMode:
    FULL = "full"  # a version with full weights: its files, copied and checked
    MERGED = "merged"  # an adapter merged into its base
    ADAPTER = "adapter"  # an adapter alone, for a runtime that applies it itself


def bundle_mode(version: ModelVersion, *, adapter_only: bool) -> str:
    if adapter_only:
        if not version.is_adapter:
            raise ValidationFailed(
                f"{version.label} holds full weights, not a LoRA adapter",
                code="not_an_adapter",
                fields={"adapter_only": "only for a LoRA adapter version"},
            )
        return BundleMode.ADAPTER
    return BundleMode.MERGED if version.is_adapter else BundleMode.FULL


def bundle_name(version: ModelVersion, mode: str) -> str:
    """The tar's top folder and file name: ``<name>-v<n>`` (``-adapter`` for an adapter)."""
    return f"{version.name}-v{version.version}" + ("-adapter" if mode == BundleMode.ADAPTER else "")


def _bundle_folder(version: ModelVersion, mode: str) -> Path:
    stamp = int(version.updated_at.timestamp() * 1_000_000)
    root = Path(settings.TANDEM_BUNDLE_ROOT) / f"version-{version.pk}"
    return root / f"{mode}-{stamp}"


# --------------------------------------------------------------------------- building


def _check_unchanged(version: ModelVersion) -> None:
    changed = model_version_verify_artifacts(version=version)
    if changed:
        raise Conflict(
            f"{version.label}: files changed since registration: {', '.join(changed)}",
            code="artifacts_changed",
        )


def _copy_recorded(version: ModelVersion, out: Path, roles=COPIED_ROLES) -> list[str]:
    """Copy the version's recorded files of ``roles``; each copy must hash as registered."""
    copied = []
    source = Path(version.artifact_dir)
    for artifact in version.artifacts.filter(role__in=roles).order_by("path"):
        target = out / artifact.path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / artifact.path, target)
        if sha256_file(target) != artifact.sha256:
            raise Conflict(
                f"{version.label}: {artifact.path} changed while it was copied",
                code="artifacts_changed",
            )
        copied.append(artifact.path)
    return copied


def _base_of(version: ModelVersion) -> ModelVersion:
    base = version.base_model or version.parent
    if base is None:
        raise Conflict(f"{version.label} is an adapter without a base model", code="no_base")
    return base


def _write_merged(version: ModelVersion, out: Path) -> None:
    """Base + adapter merged (``load_causal_lm`` / ``load_sequence_classifier`` merge on load)."""
    from rlhf.training.loading import load_causal_lm, load_sequence_classifier, load_tokenizer

    base = _base_of(version)
    _check_unchanged(base)
    if version.kind == VersionKind.REWARD:
        model = load_sequence_classifier(version.artifact_dir)
    else:
        # "auto": the base's own precision, so a bf16 base exports bf16 weights.
        model = load_causal_lm(version.artifact_dir, dtype="auto", base=base.artifact_dir)
    model.save_pretrained(out, safe_serialization=True)
    load_tokenizer(version.artifact_dir, base=base.artifact_dir).save_pretrained(out)


def _write_adapter(version: ModelVersion, out: Path) -> None:
    _copy_recorded(version, out)
    if not (out / "tokenizer_config.json").is_file():
        from rlhf.training.loading import load_tokenizer

        load_tokenizer(_base_of(version).artifact_dir).save_pretrained(out)
    base_generation = Path(_base_of(version).artifact_dir) / "generation_config.json"
    if version.kind == VersionKind.POLICY and base_generation.is_file():
        shutil.copyfile(base_generation, out / "generation_config.json")


def _ensure_chat_template(out: Path) -> None:
    """The template as its own file, as recent tokenizers save it, even when an older one kept
    it inside ``tokenizer_config.json`` only."""
    if (out / "chat_template.jinja").is_file():
        return
    config_path = out / "tokenizer_config.json"
    if not config_path.is_file():
        return
    template = json.loads(config_path.read_text(encoding="utf-8")).get("chat_template")
    if isinstance(template, str) and template:
        (out / "chat_template.jinja").write_text(template, encoding="utf-8")


def _ensure_generation_config(version: ModelVersion, out: Path, mode: str) -> None:
    if version.kind != VersionKind.POLICY or mode == BundleMode.ADAPTER:
        return
    if (out / "generation_config.json").is_file():
        return
    from transformers import AutoConfig, GenerationConfig

    GenerationConfig.from_model_config(AutoConfig.from_pretrained(out)).save_pretrained(out)


def _lineage(version: ModelVersion, mode: str) -> dict:
    ancestors = selectors.model_version_ancestors(version)
    snapshot = version.dataset_snapshot

    def brief(v: ModelVersion | None) -> dict | None:
        if v is None:
            return None
        return {"id": v.pk, "label": v.label, "state": v.state, "source": v.source}

    return {
        "version": {
            "id": version.pk,
            "project": version.project.slug,
            "name": version.name,
            "number": version.version,
            "label": version.label,
            "kind": version.kind,
            "state": version.state,
            "aliases": selectors.aliases_of(version),
            "architecture": version.architecture,
            "backbone": version.backbone,
            "source": version.source,
        },
        "bundle": {
            "mode": mode,
            "exported_at": timezone.now().isoformat(),
            "weights": {
                BundleMode.FULL: "the version's own weights",
                BundleMode.MERGED: "LoRA adapter merged into the base model (merge_and_unload)",
                BundleMode.ADAPTER: "LoRA adapter only: apply it to the base model",
            }[mode],
        },
        "base_model": brief(version.base_model),
        "parents": [brief(v) for v in ancestors],
        "training_run": version.training_run_id,
        "dataset_snapshot": (
            {"id": snapshot.pk, "content_sha256": snapshot.content_sha256} if snapshot else None
        ),
        "registered_files": dict(version.artifacts.values_list("path", "sha256")),
        "config": version.config,
        "metrics": version.metrics,
        "data_card": version.data_card,
        "code_version": version.code_version,
        "library_versions": version.library_versions,
        "chat_template_sha256": version.chat_template_sha256,
    }


def model_version_bundle(
    *, version: ModelVersion, out_dir: Path, adapter_only: bool = False, on_progress=None
):
    """Write ``version``'s bundle into ``out_dir`` (a new or empty folder); returns it.

    The caller checked access (``access_model_version_export``); this checks only the files.
    ``on_progress(stage, done, total)`` is called as each of the ``BUNDLE_STEPS`` starts and
    once all are done (``manage.py models export`` draws it)."""
    version = ModelVersion.objects.select_related(
        "project", "base_model", "parent", "dataset_snapshot"
    ).get(pk=version.pk)
    mode = bundle_mode(version, adapter_only=adapter_only)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise ValidationFailed(
            f"{out} is not empty", code="folder_not_empty", fields={"out": "a new or empty folder"}
        )
    _check_unchanged(version)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        _write_bundle(version, out, mode, on_progress or (lambda stage, done, total: None))
    except BaseException:
        # Nothing half-written is left to be mistaken for a bundle.
        if created:
            shutil.rmtree(out, ignore_errors=True)
        else:
            for child in out.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        raise
    return out


BUNDLE_STEPS = ("weights", "tokenizer files", "model card", "lineage", "manifest")


def _write_bundle(version: ModelVersion, out: Path, mode: str, progress) -> None:
    total = len(BUNDLE_STEPS)
    progress(BUNDLE_STEPS[0], 0, total)
    if mode == BundleMode.FULL:
        _copy_recorded(version, out)
    elif mode == BundleMode.MERGED:
        _write_merged(version, out)
    else:
        _write_adapter(version, out)
    progress(BUNDLE_STEPS[1], 1, total)
    _ensure_chat_template(out)
    _ensure_generation_config(version, out, mode)
    progress(BUNDLE_STEPS[2], 2, total)
    (out / CARD).write_text(model_version_refresh_card(version=version), encoding="utf-8")
    progress(BUNDLE_STEPS[3], 3, total)
    lineage = json.dumps(_lineage(version, mode), indent=2, sort_keys=True, default=str)
    (out / LINEAGE).write_text(lineage + "\n", encoding="utf-8")
    progress(BUNDLE_STEPS[4], 4, total)
    (out / MANIFEST).write_text("\n".join(manifest_lines(out)) + "\n", encoding="utf-8")
    progress("done", total, total)


# --------------------------------------------------------------------------- stored bundles


@dataclass(frozen=True)
class BundleStatus:
    status: str  # ready | queued | failed | missing
    mode: str
    name: str
    folder: Path
    error: str = ""


def model_version_bundle_status(*, version: ModelVersion, adapter_only: bool) -> BundleStatus:
    mode = bundle_mode(version, adapter_only=adapter_only)
    folder = _bundle_folder(version, mode)
    name = bundle_name(version, mode)
    if (folder / MANIFEST).is_file():
        return BundleStatus("ready", mode, name, folder)
    error = folder.with_name(folder.name + ".error")
    if error.is_file():
        return BundleStatus("failed", mode, name, folder, error.read_text(encoding="utf-8"))
    if folder.with_name(folder.name + ".queued").is_file():
        return BundleStatus("queued", mode, name, folder)
    return BundleStatus("missing", mode, name, folder)


def model_version_bundle_request(*, version: ModelVersion, adapter_only: bool) -> BundleStatus:
    """Queue the bundle's build (after commit) unless it is ready; a failed one is retried."""
    current = model_version_bundle_status(version=version, adapter_only=adapter_only)
    if current.status == "ready":
        return current
    folder = current.folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.with_name(folder.name + ".error").unlink(missing_ok=True)
    folder.with_name(folder.name + ".queued").touch()
    from models_registry.tasks import model_version_bundle_job

    transaction.on_commit(
        lambda: model_version_bundle_job.enqueue(version_id=version.pk, adapter_only=adapter_only)
    )
    return model_version_bundle_status(version=version, adapter_only=adapter_only)


def model_version_bundle_build(*, version_id: int, adapter_only: bool) -> BundleStatus:
    """The job's body: build into a temporary folder, rename into place. Idempotent."""
    version = ModelVersion.objects.get(pk=version_id)
    current = model_version_bundle_status(version=version, adapter_only=adapter_only)
    if current.status == "ready":
        return current
    folder = current.folder
    marker = folder.with_name(folder.name + ".queued")
    building = folder.with_name(f".{folder.name}.{uuid.uuid4().hex}")
    try:
        model_version_bundle(version=version, out_dir=building, adapter_only=adapter_only)
        try:
            os.rename(building, folder)
        except OSError:
            if not (folder / MANIFEST).is_file():
                raise
            shutil.rmtree(building)  # another worker finished the same bundle first
    except Exception as exc:
        shutil.rmtree(building, ignore_errors=True)
        folder.with_name(folder.name + ".error").write_text(
            getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}", encoding="utf-8"
        )
        marker.unlink(missing_ok=True)
        raise
    marker.unlink(missing_ok=True)
    for stale in folder.parent.glob(f"{current.mode}-*"):
        if stale.is_dir() and stale != folder:
            shutil.rmtree(stale, ignore_errors=True)  # an earlier state's bundle
    return model_version_bundle_status(version=version, adapter_only=adapter_only)


# --------------------------------------------------------------------------- downloads


def model_version_bundle_download(
    *, version: ModelVersion, adapter_only: bool
) -> tuple[BundleStatus, TarLayout, str]:
    """A ready bundle's tar layout and its ETag (the manifest's sha256). Not ready: a 409
    saying why. The caller records what it sent with ``model_version_bundle_sent``."""
    current = model_version_bundle_status(version=version, adapter_only=adapter_only)
    if current.status != "ready":
        hint = {
            "missing": "POST to this address to build it",
            "queued": "it is being built; try again shortly",
            "failed": f"its build failed ({current.error}); POST to retry",
        }[current.status]
        raise Conflict(
            f"the bundle of {version.label} is not ready: {hint}",
            code="bundle_not_ready",
            status=current.status,
        )
    layout = TarLayout(current.folder, prefix=current.name)
    return current, layout, sha256_file(current.folder / MANIFEST)


def model_version_bundle_sent(
    *, version: ModelVersion, bundle: BundleStatus, etag: str, size: int, actor, sent: str
) -> None:
    """One ``model_bundle_downloaded`` event per response that carried bytes: who took which
    version's bundle, and which bytes (``sent``: the Content-Range, empty for the whole tar)."""
    data_audit_record(
        action=DataAuditAction.MODEL_BUNDLE_DOWNLOADED,
        subject=f"model:{version.pk}:{bundle.mode}",
        actor=actor,
        project=version.project,
        details={
            "via": "api",
            "mode": bundle.mode,
            "label": version.label,
            "state": version.state,
            "manifest_sha256": etag,
            "size_bytes": size,
            "range": sent,
        },
    )


def model_version_export_audit(*, version: ModelVersion, mode: str, actor, out: Path) -> None:
    """``manage.py models export``: the bundle left the registry through the terminal."""
    data_audit_record(
        action=DataAuditAction.MODEL_BUNDLE_DOWNLOADED,
        subject=f"model:{version.pk}:{mode}",
        actor=actor,
        project=version.project,
        details={
            "via": "command",
            "mode": mode,
            "label": version.label,
            "state": version.state,
            "manifest_sha256": sha256_file(out / MANIFEST),
            "out": str(out),
        },
    )
