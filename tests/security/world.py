"""A small world to attack: our project with one member of each role, and a foreign project.

``own`` is the project every role below belongs to; ``foreign`` belongs to someone else (its
admin is the ``outsider``). Everything about the foreign project carries ``FOREIGN_MARKER``,
so a test can assert that not one byte of it reaches a non-member.

Path parameters are filled by ``OBJECT_FACTORIES``: one entry per parameter name that any
route uses. A route that lands with a new parameter (``run_id``, ``version_id``...) makes
``test_every_path_parameter_has_an_object_factory`` fail until an entry is added here.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from django.contrib.auth import get_user_model
from django.db import connection

from annotation import services
from annotation.models import TaskKind
from annotation.roles import Role
from annotation.tokens import TokenScope

User = get_user_model()

FOREIGN_MARKER = "FOREIGNf7a3"
PROJECT_ROLES = ("annotator", "reviewer", "engineer", "admin")
ALL_ACTORS = (*PROJECT_ROLES, "outsider", "anonymous")
TOKEN_SCOPES = tuple(TokenScope.values)
# Tables whose rows change on any authenticated request and carry no domain state.
CHECKSUM_EXCLUDED_TABLES = {"django_session"}
# Columns that change on any request authenticated by that row (a token's last use).
CHECKSUM_EXCLUDED_COLUMNS = {"annotation_apitoken": {"last_used_at"}}


@dataclass
class World:
    own: object
    foreign: object
    users: dict = field(default_factory=dict)  # actor -> User
    tokens: dict = field(default_factory=dict)  # (actor, scope) -> the token's secret
    objects: dict = field(default_factory=dict)  # (side, actor) -> {param: id}

    def ids(self, side: str, actor: str) -> dict:
        """The objects a request by ``actor`` names: its own ones, or the foreign project's."""
        if side == "foreign" or actor in ("outsider", "anonymous"):
            key = ("foreign", "any") if side == "foreign" else ("own", "annotator")
            return self.objects[key]
        return self.objects[("own", actor)]


def _pairwise(project, n: int, text: str):
    for i in range(n):
        services.task_create(
            project=project,
            messages=[{"role": "user", "content": f"{text} question {i}?"}],
            kind=TaskKind.PAIRWISE,
            responses=[
                {"text": f"{text} answer A{i}", "origin": "model", "model_name": "m"},
                {"text": f"{text} answer B{i}", "origin": "model", "model_name": "m"},
            ],
        )


def _label_then_hold(project, user) -> dict:
    """Label one task, then hold a lease on another: the objects an annotator acts on."""
    lease = services.task_claim_next(project=project, annotator=user)
    label = services.label_submit(
        task=lease.task, annotator=user, payload={"choice": "A", "strength": "clear"}
    ).label
    held = services.task_claim_next(project=project, annotator=user)
    return {"task_id": held.task_id, "label_id": label.pk}


@cache
def _tiny_model_folder() -> Path:
    from rlhf.training.base_models import build_tiny_causal_lm

    return build_tiny_causal_lm(Path(tempfile.mkdtemp(prefix="security-model-")), seed=0)


def _objects_of_other_apps(project, creator) -> dict:
    """Snapshots and runs (rlhf), model versions, aliases and generation jobs (models_registry).

    Imported plainly: a module that moves or breaks fails the world, never thins it out.
    """
    from models_registry import generation
    from models_registry import services as registry
    from rlhf.models import TrainingRun
    from rlhf.snapshots import services as snapshots

    snapshot = snapshots.snapshot_create(project=project, created_by=creator, enqueue=False)
    artifact_dir = Path(tempfile.mkdtemp(prefix="security-run-"))
    (artifact_dir / "weights.safetensors").write_bytes(b"weights")
    run = TrainingRun.objects.create(
        project=project, name="matrix run", method="dpo", method_title="DPO", config={},
        dataset_snapshot_id=snapshot.pk, data_path=str(artifact_dir),
        created_by=creator, artifact_dir=str(artifact_dir),
        artifacts=[{"path": "weights.safetensors", "sha256": "", "bytes": 7}],
    )  # fmt: skip
    version = registry.model_version_register_base(
        project=project, registered_by=creator, folder=_tiny_model_folder(),
        name=f"base-{project.pk}",
    )  # fmt: skip
    prompt_id = project.prompts.order_by("pk").values_list("pk", flat=True).first()
    job = generation.generation_job_create(
        version=version, prompt_ids=[prompt_id], created_by=creator
    )
    return {
        "snapshot_id": snapshot.pk,
        "run_id": run.pk,
        "path": "weights.safetensors",
        "version_id": version.pk,
        "job_id": job.pk,
        "name": "champion",
    }


def build_world() -> World:
    make = User.objects.create_user
    staff = make("platform-staff", password="pw-staff", is_staff=True)
    users = {role: make(f"{role}-own", password=f"pw-{role}") for role in PROJECT_ROLES}
    users["outsider"] = make("outsider", password="pw-outsider")
    spare = make("spare-member", password="pw-spare")
    foreign_annotator = make(f"annotator-{FOREIGN_MARKER}", password="pw-foreign")

    own = services.project_create(name="Own project", created_by=staff, overlap=3)
    foreign = services.project_create(
        name=f"Project {FOREIGN_MARKER}",
        guidelines=f"Guidelines {FOREIGN_MARKER}",
        created_by=staff,
        overlap=3,
    )
    for role in PROJECT_ROLES:
        services.membership_set(project=own, user=users[role], role=role)
    services.membership_set(project=own, user=spare, role=Role.ANNOTATOR)
    services.membership_set(project=foreign, user=users["outsider"], role=Role.ADMIN)
    services.membership_set(project=foreign, user=foreign_annotator, role=Role.ANNOTATOR)
    _pairwise(own, 6, "own")
    _pairwise(foreign, 3, FOREIGN_MARKER)

    world = World(own=own, foreign=foreign, users=users)
    others = {"own": _objects_of_other_apps(own, staff), "foreign": {}}
    others["foreign"] = _objects_of_other_apps(foreign, staff)
    held = {role: _label_then_hold(own, users[role]) for role in ("annotator", "reviewer", "admin")}
    held["engineer"] = held["annotator"]  # an engineer labels nothing: it is shown others' objects
    for role in PROJECT_ROLES:
        world.objects[("own", role)] = {
            "project_id": own.pk,
            "user_id": spare.pk,
            **held[role],
            **others["own"],
        }
    # Each member holds a token of every scope (the matrix calls with them) and a spare one
    # (what ``token_id`` names: revoking it must not end the token the call is made with).
    for role in PROJECT_ROLES:
        for scope in TOKEN_SCOPES:
            issued = services.api_token_create(user=users[role], name=scope, scope=scope)
            world.tokens[(role, scope)] = issued.secret
        spare_token = services.api_token_create(user=users[role], name="spare", scope="read")
        world.objects[("own", role)]["token_id"] = spare_token.token.pk
        # An invitation to the role the member already has: answering it changes no role.
        invitation = services.invitation_create(
            project=own, invited_by=staff, invitee=users[role].username, role=role
        )
        world.objects[("own", role)]["invitation_id"] = invitation.pk
    foreign_token = services.api_token_create(user=foreign_annotator, name="f", scope="read")
    foreign_invitation = services.invitation_create(
        project=foreign, invited_by=staff, invitee=foreign_annotator.username, role="reviewer"
    )
    foreign_held = _label_then_hold(foreign, foreign_annotator)
    world.objects[("foreign", "any")] = {
        "project_id": foreign.pk,
        "user_id": foreign_annotator.pk,
        **foreign_held,
        **others["foreign"],
        "token_id": foreign_token.token.pk,
        "invitation_id": foreign_invitation.pk,
    }
    for values in world.objects.values():
        values["project"] = values["project_id"]  # the same id, as a query parameter
    return world


KNOWN_PARAMS = {
    "project_id", "task_id", "label_id", "user_id", "project",
    "snapshot_id", "version_id", "job_id", "name", "run_id", "path", "token_id", "invitation_id",
}  # fmt: skip


def missing_factories(params) -> set[str]:
    return set(params) - KNOWN_PARAMS


def _rows_of(cursor, table: str) -> str:
    """The table, or a subquery of it without the columns that any request may touch."""
    qn = connection.ops.quote_name
    excluded = CHECKSUM_EXCLUDED_COLUMNS.get(table)
    if not excluded:
        return qn(table)
    columns = [
        c.name
        for c in connection.introspection.get_table_description(cursor, table)
        if c.name not in excluded
    ]
    return f"(SELECT {', '.join(qn(c) for c in columns)} FROM {qn(table)})"  # noqa: S608


def db_checksum() -> dict[str, str]:
    """A digest of every row of every table (but sessions): equal before and after a refused
    request means the request changed nothing."""
    tables = sorted(set(connection.introspection.table_names()) - CHECKSUM_EXCLUDED_TABLES)
    out: dict[str, str] = {}
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Table names come from the database's own catalogue, not from input.
            parts = [
                f"SELECT '{t}', md5(coalesce(string_agg(r::text, '|' ORDER BY r::text), '')) "  # noqa: S608
                f"FROM {_rows_of(cursor, t)} r"
                for t in tables
            ]
            cursor.execute(" UNION ALL ".join(parts))
            out = dict(cursor.fetchall())
        else:
            for t in tables:
                cursor.execute(f"SELECT * FROM {_rows_of(cursor, t)} r")  # noqa: S608
                rows = sorted(repr(r) for r in cursor.fetchall())
                out[t] = hashlib.md5("|".join(rows).encode(), usedforsecurity=False).hexdigest()
    return out


def changed_tables(before: dict, after: dict) -> list[str]:
    return sorted(t for t in set(before) | set(after) if before.get(t) != after.get(t))
