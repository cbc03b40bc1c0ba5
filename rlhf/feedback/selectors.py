"""The reward model's preference, as feedback after a label and as a quality measure.

The pairs come scored by the reward model that ranked them (``rlhf.active_selection`` records
``reward_a`` / ``reward_b`` beside each task's selection score), so reading a preference here
costs no model in the web process.

- ``task_reward_preference``: for an annotator who has LABELLED a pairwise task, which side
  the reward model prefers, in the sides they saw. Before their label exists the answer is a
  409 (``label_first``), and where the project has not turned ``labels.reward_feedback`` on
  it is a 409 too (``reward_feedback_off``): the preference must never anchor a judgement.
- ``reward_agreement_by_week``: how often annotators' decisive pairwise labels agree with the
  reward model, per ISO week of the label, with a Wilson interval.
"""

from __future__ import annotations

from datetime import date

from django.db.models import OuterRef, Subquery

from annotation.models import Label, Project, Task, TaskItem, TaskKind
from annotation.services import project_reward_feedback
from config.errors import Conflict
from rlhf.models import TaskSelectionScore
from rlhf.training.intervals import wilson_interval


def _scored(tasks):
    """``tasks`` annotated with the newest recorded rewards of their sides A and B."""
    newest = TaskSelectionScore.objects.filter(
        task_id=OuterRef("pk"), reward_a__isnull=False, reward_b__isnull=False
    ).order_by("-id")
    return tasks.annotate(
        reward_a=Subquery(newest.values("reward_a")[:1]),
        reward_b=Subquery(newest.values("reward_b")[:1]),
    )


def _preferred_position(reward_a, reward_b) -> str | None:
    """ "A", "B", or None when unscored or exactly level."""
    if reward_a is None or reward_b is None or reward_a == reward_b:
        return None
    return "A" if reward_a > reward_b else "B"


def task_reward_preference(*, task: Task, user) -> dict:
    """What the annotator sees after submitting ``task`` (see the module docstring)."""
    if not project_reward_feedback(task.project):
        raise Conflict(
            "this project does not show the reward model's preference",
            code="reward_feedback_off",
        )
    if task.kind != TaskKind.PAIRWISE:
        raise Conflict(
            "the reward model's preference exists for pairwise tasks only", code="not_pairwise"
        )
    label = Label.objects.filter(task=task, annotator=user).first()
    if label is None:
        raise Conflict(
            "the reward model's preference is shown only after your label is saved",
            code="label_first",
        )
    scored = _scored(Task.objects.filter(pk=task.pk)).values("reward_a", "reward_b").get()
    position = _preferred_position(scored["reward_a"], scored["reward_b"])
    response_at = dict(TaskItem.objects.filter(task=task).values_list("position", "response_id"))
    # The sides as this annotator saw them (a label sent without a lease saw A on the left).
    left = (label.shown_order or [response_at[0]])[0]
    preferred = None
    if position is not None:
        preferred = "left" if response_at[0 if position == "A" else 1] == left else "right"
    outcome = label.payload.get("outcome")
    your_choice = outcome
    if outcome in ("A", "B"):
        your_choice = "left" if label.payload.get("winner") == left else "right"
    agrees = None
    if preferred is not None and your_choice in ("left", "right"):
        agrees = your_choice == preferred
    return {"preferred": preferred, "your_choice": your_choice, "agrees": agrees}


def reward_agreement_by_week(*, project: Project) -> list[dict]:
    """Per ISO week (of the label), the decisive pairwise labels on pairs the reward model
    scored: how many, how many agree with its preference, the rate and its 95% Wilson
    interval. Ties, "both bad" and level rewards are not counted (no side to agree on)."""
    tasks = _scored(
        Task.objects.filter(project=project, kind=TaskKind.PAIRWISE, gold__isnull=True)
    ).filter(reward_a__isnull=False)
    rewards = {
        task_id: _preferred_position(a, b)
        for task_id, a, b in tasks.values_list("pk", "reward_a", "reward_b")
    }
    weeks: dict[date, list[int]] = {}
    labels = Label.objects.filter(
        task_id__in=[t for t, p in rewards.items() if p is not None],
        payload__outcome__in=["A", "B"],
    ).values_list("task_id", "payload", "created_at")
    for task_id, payload, created_at in labels.iterator(chunk_size=2000):
        day = created_at.date()
        monday = date.fromordinal(day.toordinal() - day.weekday())
        counts = weeks.setdefault(monday, [0, 0])
        counts[0] += 1
        counts[1] += payload["outcome"] == rewards[task_id]
    rows = []
    for monday, (n, agree) in sorted(weeks.items()):
        low, high = wilson_interval(agree / n, n)
        iso = monday.isocalendar()
        rows.append(
            {
                "week": f"{iso[0]}-W{iso[1]:02d}",
                "starts": monday,
                "labels": n,
                "agree": agree,
                "rate": agree / n,
                "ci_low": low,
                "ci_high": high,
            }
        )
    return rows
