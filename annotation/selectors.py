"""Reads for annotation pages and endpoints. Nothing here writes."""

from __future__ import annotations

from django.db.models import Count, Q
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from annotation.invitations import Invitation, invitee_keys_of, open_invitations
from annotation.labels import ids_translated
from annotation.models import (
    Label,
    Lease,
    LeaseState,
    Membership,
    Project,
    Proposal,
    Task,
    TaskItem,
    TaskKind,
    TaskStatus,
)
from annotation.opaque import item_ref, task_ref
from annotation.rendering import markdown_to_safe_html
from annotation.tokens import ApiToken
from formats.peers import PeerJudgement, PeerRecord


def project_by_ref(ref: str) -> Project | None:
    """The project a command line names: an id when ``ref`` is all digits, else (or when no
    project has that id) a slug. For operators' commands, which act outside any user's scope."""
    ref = str(ref)
    project = (
        Project.objects.filter(pk=int(ref)).first() if ref.isascii() and ref.isdigit() else None
    )
    return project or Project.objects.filter(slug=ref).first()


def project_list_for_user(user) -> list[Project]:
    memberships = (
        Membership.objects.filter(user=user)
        .select_related("project")
        .order_by("project__name", "project_id")
    )
    projects = []
    for m in memberships:
        m.project.viewer_role = m.role
        projects.append(m.project)
    return projects


def project_progress(project: Project, *, user=None) -> dict:
    """Counts of the project's real work; gold items (mixed in silently) are left out."""
    work = Task.objects.filter(project=project, gold__isnull=True)
    tasks = work.aggregate(
        total=Count("id"),
        done=Count("id", filter=Q(status=TaskStatus.DONE)),
    )
    by_kind = {
        row["kind"]: {"total": row["total"], "done": row["done"]}
        for row in work.values("kind").annotate(
            total=Count("id"), done=Count("id", filter=Q(status=TaskStatus.DONE))
        )
    }
    progress = {
        "tasks_total": tasks["total"],
        "tasks_done": tasks["done"],
        "tasks_open": tasks["total"] - tasks["done"],
        "labels_total": Label.objects.filter(task__project=project).count(),
        "by_kind": by_kind,
    }
    if user is not None:
        progress["my_labels"] = Label.objects.filter(task__project=project, annotator=user).count()
        progress["my_skips"] = Lease.objects.filter(
            task__project=project, annotator=user, state=LeaseState.SKIPPED
        ).count()
    return progress


def _message_view(message: dict) -> dict:
    return {
        "role": message["role"],
        "content": message["content"],
        "html": markdown_to_safe_html(message["content"]),
    }


def task_view_for_annotator(lease: Lease) -> dict:
    """What an annotator sees: no model names, no response ids, no other labels, sides in
    their own order."""
    task = lease.task
    project = task.project
    items = {item.response_id: item.response for item in task_items(task)}
    ids = annotator_ids(task)
    order = lease.shown_order or list(items)
    # An active lease has no label beside it: submit closes the lease in the same transaction.
    label = None
    if lease.state != LeaseState.ACTIVE:
        label = Label.objects.filter(task=task, annotator_id=lease.annotator_id).first()
    return {
        "task_id": task_ref(task.pk),
        "project_id": project.pk,
        "kind": task.kind,
        "prompt": [_message_view(m) for m in task.prompt.messages],
        "responses": [
            {
                "id": ids[rid],
                "text": items[rid].text,
                "html": markdown_to_safe_html(items[rid].text),
            }
            for rid in order
        ],
        "rubric": project.rubric if task.kind == "rubric" else [],
        "proposal": _proposal_view(task) if task.kind == TaskKind.CONFIRM else None,
        "lease_expires_at": lease.expires_at.isoformat(),
        "lease_state": lease.state,
        "label": label_view_for_annotator(label, ids) if label else None,
    }


def _proposal_view(task: Task) -> dict:
    """A confirm task's proposal as its annotator sees it: what kind, and the text; not
    which version wrote it (a name would anchor the decision as much as a score)."""
    proposal = proposal_of_task(task)
    return {
        "kind": proposal.kind,
        "text": proposal.text,
        "html": markdown_to_safe_html(proposal.text),
    }


def proposal_of_task(task: Task) -> Proposal:
    """The proposal a ``confirm`` task asks about (read once per task object)."""
    proposal = getattr(task, "loaded_proposal", None)
    if proposal is None:
        proposal = Proposal.objects.get(task_id=task.pk)
        task.loaded_proposal = proposal
    return proposal


def annotator_ids(task: Task) -> dict[int, int]:
    """response id -> the id annotators see for it in ``task``: its task item's id.

    Response ids follow the order answers were written in; a review round writes the
    candidate's answers before the champion's, so a response id would tell an annotator
    which side is the candidate. Task items are created in the task's position order, which
    a review round draws at random per prompt, so their ids say nothing about the models; and
    they are shown as refs (``annotation.opaque``), so their age does not mark gold tasks."""
    return {item.response_id: item_ref(item.pk) for item in task_items(task)}


def label_views_for_annotator(labels: list[Label]) -> list[dict]:
    """``label_view_for_annotator`` for many labels, their tasks' ids read in one query."""
    ids: dict[int, dict[int, int]] = {}
    rows = TaskItem.objects.filter(task_id__in={label.task_id for label in labels})
    for task_id, response_id, item_id in rows.values_list("task_id", "response_id", "pk"):
        ids.setdefault(task_id, {})[response_id] = item_ref(item_id)
    return [label_view_for_annotator(label, ids.get(label.task_id, {})) for label in labels]


def label_view_for_annotator(label: Label, ids: dict[int, int] | None = None) -> dict:
    """``label_view`` in the ids the annotator API speaks (see ``annotator_ids``)."""
    if ids is None:
        ids = annotator_ids(label.task)
    view = label_view(label)
    view["task_id"] = task_ref(label.task_id)
    view["payload"] = ids_translated(label.kind, label.payload, ids, strict=False)
    if label.shown_order is not None:
        view["shown_order"] = [ids.get(i, i) for i in label.shown_order]
    return view


def label_revisions_for_annotator(label: Label) -> list[dict]:
    """A label's earlier versions, oldest first, in the annotator API's ids."""
    ids = annotator_ids(label.task)
    return [
        {
            "version": revision.version,
            "payload": ids_translated(label.kind, revision.payload, ids, strict=False),
            "flags": revision.flags,
            "created_at": revision.created_at,
        }
        for revision in label.revisions.order_by("version")
    ]


def payload_from_annotator(task: Task, payload):
    """A client's payload, in the annotator API's ids, turned back into response ids;
    an id that names no response of the task is refused."""
    by_item = {item_id: response_id for response_id, item_id in annotator_ids(task).items()}
    return ids_translated(task.kind, payload, by_item, strict=True)


def task_items(task: Task) -> list[TaskItem]:
    """The task's items with their responses, in position order, read once per task object
    (the claim loads them to shuffle the sides; the task view and submit reuse them).

    A plain attribute rather than ``prefetch_related_objects``, whose machinery cost more CPU
    than the query itself on the claim path."""
    items = getattr(task, "loaded_items", None)
    if items is None:
        items = list(
            TaskItem.objects.filter(task_id=task.pk).select_related("response").order_by("position")
        )
        task.loaded_items = items
    return items


def label_view(label: Label) -> dict:
    return {
        "id": label.pk,
        "task_id": label.task_id,
        "kind": label.kind,
        "payload": label.payload,
        "shown_order": label.shown_order,
        "flags": label.flags,
        "duration_ms": label.duration_ms,
        "version": label.version,
        "reviewed": label.reviewed_at is not None,
        "created_at": label.created_at.isoformat(),
        "updated_at": label.updated_at.isoformat(),
    }


def label_list_for_annotator(user, *, project_id=None, kind=None, since=None, until=None):
    """The user's own labels, newest first; ``since``/``until`` are dates, both included."""
    labels = Label.objects.filter(annotator=user).order_by("-id")
    if project_id is not None:
        labels = labels.filter(task__project_id=project_id)
    if kind:
        labels = labels.filter(kind=kind)
    if since is not None:
        labels = labels.filter(created_at__date__gte=since)
    if until is not None:
        labels = labels.filter(created_at__date__lte=until)
    return labels


def held_lease(task: Task, user) -> Lease | None:
    return (
        Lease.objects.select_related("task", "task__project", "task__prompt")
        .filter(task=task, annotator=user)
        .first()
    )


def api_token_list_for_user(user):
    """The user's own tokens, newest first (revoked and expired ones too, marked by state)."""
    return ApiToken.objects.filter(user=user).select_related("user").order_by("-created_at", "-pk")


def api_token_state(token: ApiToken, *, user=None) -> str:
    """live, expired, revoked, or password_changed (issued before the current password)."""
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at <= timezone.now():
        return "expired"
    owner = user or token.user
    if not constant_time_compare(token.password_fingerprint, owner.get_session_auth_hash()):
        return "password_changed"
    return "live"


def api_token_view(token: ApiToken) -> dict:
    return {
        "id": token.pk,
        "name": token.name,
        "scope": token.scope,
        "prefix": token.prefix,
        "created_at": token.created_at,
        "expires_at": token.expires_at,
        "last_used_at": token.last_used_at,
        "revoked_at": token.revoked_at,
        "state": api_token_state(token),
    }


def invitation_list_for_user(user) -> list[dict]:
    """Pending invitations addressed to the user, oldest first, as the home page shows them."""
    invitations = (
        open_invitations(Invitation.objects.filter(invitee__in=invitee_keys_of(user)))
        .select_related("project", "invited_by")
        .order_by("created_at", "pk")
    )
    return [
        {
            "id": i.pk,
            "project_id": i.project_id,
            "project_name": i.project.name,
            "role": i.role,
            "invited_by": i.invited_by.username if i.invited_by else None,
            "created_at": i.created_at,
        }
        for i in invitations
    ]


def invitation_list_for_project(project) -> list[Invitation]:
    """The project's invitations that can still be answered, for its admins."""
    return list(open_invitations(project.invitations.all()).order_by("created_at", "pk"))


def invitation_view(invitation: Invitation) -> dict:
    return {
        "id": invitation.pk,
        "invitee": invitation.invitee,
        "role": invitation.role,
        "invited_by": invitation.invited_by.username if invitation.invited_by else None,
        "created_at": invitation.created_at,
        "expires_at": invitation.expires_at,
    }


# ---------------------------------------------------------------------------------------
# Labels in a peer tool's shape (formats.peers): one record per task of a comparison kind


PEER_EXPORT_CHUNK = 500


def _peer_tiers(label: Label, position: dict[int, int]) -> list[list[int]] | None:
    """A stored label as tiers of the task's item positions; None if it states no order
    (both answers bad)."""
    payload = label.payload
    if label.kind == TaskKind.PAIRWISE:
        outcome = payload.get("outcome")
        return {"A": [[0], [1]], "B": [[1], [0]], "tie": [[0, 1]]}.get(outcome)
    return [sorted(position[rid] for rid in tier) for tier in payload.get("ranking") or []]


def labels_as_peer_records(*, project: Project, chunk: int = PEER_EXPORT_CHUNK):
    """Every labelled pairwise and ranking task of ``project`` as a ``PeerRecord``, streamed in
    chunks of tasks by id (bounded memory and bounded statements, whatever the project's
    size). Annotators appear by their stable account id, never by name."""
    last = 0
    while True:
        tasks = list(
            Task.objects.filter(
                project=project,
                pk__gt=last,
                kind__in=[TaskKind.PAIRWISE, TaskKind.RANKING],
                label_count__gt=0,
            )
            .select_related("prompt")
            .order_by("pk")[:chunk]
        )
        if not tasks:
            return
        last = tasks[-1].pk
        items: dict[int, list[TaskItem]] = {}
        for item in TaskItem.objects.filter(task__in=tasks).select_related("response"):
            items.setdefault(item.task_id, []).append(item)
        labels: dict[int, list[Label]] = {}
        for label in Label.objects.filter(task__in=tasks).order_by("pk"):
            labels.setdefault(label.task_id, []).append(label)
        for task in tasks:
            ordered = sorted(items.get(task.pk, []), key=lambda i: i.position)
            position = {item.response_id: item.position for item in ordered}
            record = PeerRecord(
                prompt=task.prompt.messages,
                responses=[item.response.text for item in ordered],
                external_id=f"tandem-task-{task.pk}",
            )
            for label in labels.get(task.pk, []):
                tiers = _peer_tiers(label, position)
                if tiers:
                    record.judgements.append(PeerJudgement(str(label.annotator_id), tiers))
                else:
                    record.skipped += 1
            yield record
