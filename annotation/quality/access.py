"""Access gates for quality objects: built on annotation.access, same 404/403 rules."""

from django.http import Http404

from annotation.access import access_project
from annotation.models import Task


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
