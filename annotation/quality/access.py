"""Access gates for quality objects: built on annotation.access, same 404/403 rules."""

from django.http import Http404

from annotation.access import access_project, review_sealed_reason
from annotation.models import Task
from annotation.roles import Capability
from config.errors import Conflict


def access_task_for(user, task_id, *, capability: str) -> Task:
    """Any task of a project where ``user`` has ``capability`` (review, manage); else 404/403.

    Unlike ``access_task`` (annotators, blind), reviewers and admins may open every task of
    their project: adjudication and gold marking are about tasks they did not label.
    """
    try:
        task = Task.objects.select_related("project", "prompt").get(pk=int(task_id))
    except (Task.DoesNotExist, TypeError, ValueError):
        raise Http404("No such task.") from None
    access_project(user, task.project_id, capability=capability)
    return task


def access_task_for_review(user, task_id) -> Task:
    """A task of a project where ``user`` reviews, once its sides and labels may be shown to
    them (``review_sealed_reason``); a sealed task is a 409 that says why, and shows nothing."""
    task = access_task_for(user, task_id, capability=Capability.REVIEW)
    reason = review_sealed_reason(task, user)
    if reason:
        raise Conflict(f"This task cannot be reviewed by you yet: {reason}.", code="task_sealed")
    return task
