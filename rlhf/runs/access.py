"""The access gate for training runs: every run a user asks for is fetched here.

Built on ``annotation.access.access_project``: a run of a project the user is not a member of
(or one that does not exist) is a 404; a member without the capability gets 403. Reading a run
(its page, API, live updates) takes ``data``; launching and cancelling take ``train``.
"""

from __future__ import annotations

from django.http import Http404

from annotation.access import access_project
from annotation.roles import Capability
from rlhf.models import TrainingRun


def access_training_run(user, run_id, *, capability: str = Capability.DATA) -> TrainingRun:
    """The run, if ``user`` may act on its project with ``capability``; else 404 (or 403)."""
    try:
        # Not the snapshot: its frozen label ids, report and card can be megabytes, and the
        # live page's websocket passes this gate before every push.
        run = TrainingRun.objects.select_related("project").get(pk=int(run_id))
    except (TrainingRun.DoesNotExist, TypeError, ValueError):
        raise Http404("No such training run.") from None
    try:
        run.project = access_project(user, run.project_id, capability=capability)
    except Http404:
        raise Http404("No such training run.") from None
    return run
