"""The access gate for model versions. Every view, endpoint and command that turns a version id
from a request into an object goes through ``access_model_version``.

Model versions are project data: a version of a project the user is not a member of is a 404,
as is an id that does not exist. Reading a version needs the ``data`` capability (reviewers,
engineers, admins): annotators review blind and must not learn which model wrote what.
Registering and generating need ``train``; approving, rejecting and moving aliases need
``review``.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import Http404

from annotation.access import project_role
from annotation.roles import Capability, role_can
from models_registry.models import GenerationJob, ModelVersion, VersionState


def access_model_version(user, version_id, *, capability: str = Capability.DATA) -> ModelVersion:
    try:
        version = ModelVersion.objects.select_related("project", "parent", "base_model").get(
            pk=int(version_id)
        )
    except (ModelVersion.DoesNotExist, TypeError, ValueError):
        raise Http404("No such model version.") from None
    role = project_role(user, version.project_id)
    if role is None:
        raise Http404("No such model version.")
    if not role_can(role, capability):
        raise PermissionDenied(f"Your role in this project cannot {capability}.")
    version.viewer_role = role
    return version


def access_generation_job(user, job_id, *, capability: str = Capability.DATA) -> GenerationJob:
    try:
        job = GenerationJob.objects.select_related("version", "project").get(pk=int(job_id))
    except (GenerationJob.DoesNotExist, TypeError, ValueError):
        raise Http404("No such generation job.") from None
    role = project_role(user, job.project_id)
    if role is None:
        raise Http404("No such generation job.")
    if not role_can(role, capability):
        raise PermissionDenied(f"Your role in this project cannot {capability}.")
    return job


def access_model_version_export(user, version_id) -> ModelVersion:
    """Who may export (build or download a bundle of) a version: an approved one, anyone who may
    read the registry (``data``: reviewers, engineers, admins); any other state, only those who
    train (``train``: the project's engineers and admins). Annotators never (403)."""
    version = access_model_version(user, version_id, capability=Capability.DATA)
    if version.state != VersionState.APPROVED and not role_can(
        version.viewer_role, Capability.TRAIN
    ):
        raise PermissionDenied(
            f"{version.label} is {version.state}: only the project's engineers export a version "
            "that is not approved."
        )
    return version
