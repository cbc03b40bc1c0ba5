"""Reads of the review cycle: the project's review settings and pinned prompts, the reward
model reviews score with, and the reviewer's decision page and the lineage page.

What a decision rests on, in one place: the blind win rate against the champion (Wilson 95%
interval, ties half a win), the Bradley-Terry leaderboard, the review round's evaluation
(reward, KL to the parent, lengths), sample pairs with their labels, the project's thresholds,
the lineage and the data card. Model text is returned raw; templates escape it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from annotation.models import Label, Project, Task, TaskItem, TaskStatus
from annotation.rendering import markdown_to_safe_html
from models_registry import selectors
from models_registry.models import LoopRound, ModelVersion, RoundKind, VersionKind, VersionState

# Approval needs this many blind labels against the champion unless the project sets its own
# number: with 20 labels a clear win (16 of 20) has a 95% Wilson interval of about 58% to 92%,
# the least that tells a better model from noise. No minimum win rate by default: the reviewer
# reads the interval, which the decision page and the approval record always report.
DEFAULT_MIN_LABELS = 20
DEFAULT_FRESH_PROMPTS = 4
DEFAULT_ANNOTATION_PROMPTS = 16
SAMPLE_PAIRS = 6
LEADERBOARD_BOOTSTRAP = 300


# --------------------------------------------------------------------------- settings


def eval_prompt_ids(project: Project) -> list[int]:
    return [int(i) for i in (project.options or {}).get("eval_prompt_ids", [])]


def review_settings(project: Project) -> dict:
    return {
        **thresholds(project),
        "review_fresh_prompts": review_option_int(
            project, "review_fresh_prompts", DEFAULT_FRESH_PROMPTS
        ),
        "annotation_round_prompts": review_option_int(
            project, "annotation_round_prompts", DEFAULT_ANNOTATION_PROMPTS
        ),
        "eval_prompt_ids": eval_prompt_ids(project),
    }


def review_option_int(project: Project, key: str, default: int) -> int:
    try:
        return max(0, int((project.options or {}).get(key, default)))
    except (TypeError, ValueError):
        return default


def review_reward_model(project: Project) -> ModelVersion | None:
    chosen = (project.options or {}).get("review_reward_model_version")
    versions = ModelVersion.objects.filter(project=project, kind=VersionKind.REWARD)
    if chosen:
        return versions.filter(pk=int(chosen)).first()
    return (
        versions.exclude(state__in=[VersionState.REJECTED, VersionState.ARCHIVED])
        .order_by("-id")
        .first()
    )


# --------------------------------------------------------------------------- evidence


def thresholds(project: Project) -> dict:
    """The approval thresholds: the one place their defaults live."""
    options = project.options or {}
    min_labels = options.get("review_min_labels")
    return {
        "review_min_labels": DEFAULT_MIN_LABELS if min_labels is None else int(min_labels),
        "review_min_win_rate": options.get("review_min_win_rate"),
    }


def review_rounds(version: ModelVersion) -> list[LoopRound]:
    return list(
        LoopRound.objects.filter(version=version).select_related("opponent").order_by("-id")
    )


def sample_pairs(loop_round: LoopRound, *, limit: int = SAMPLE_PAIRS) -> list[dict]:
    """The first finished tasks of a review round: prompt, the candidate's and the champion's
    answers, and the canonical outcomes, turned into the candidate's point of view.

    Only tasks whose labels are all in: the page names the sides, and a reviewer may also
    annotate, so a pair still open would be labelled by someone who knows which is which."""
    finished = set(
        Task.objects.filter(pk__in=loop_round.task_ids, status=TaskStatus.DONE).values_list(
            "pk", flat=True
        )
    )
    task_ids = [t for t in loop_round.task_ids if t in finished][:limit]
    items = TaskItem.objects.filter(task_id__in=task_ids).select_related("response", "task__prompt")
    by_task: dict[int, dict] = {}
    candidate_name = loop_round.version.response_model_name
    for item in items:
        row = by_task.setdefault(
            item.task_id, {"task_id": item.task_id, "prompt": item.task.prompt.messages}
        )
        side = "candidate" if item.response.model_name == candidate_name else "champion"
        row[side] = item.response.text
        row[f"{side}_position"] = item.position
    verdicts = {0: "A", 1: "B"}
    for task_id, payload in Label.objects.filter(task_id__in=task_ids).values_list(
        "task_id", "payload"
    ):
        row = by_task.get(task_id)
        if row is None:
            continue
        outcome = payload.get("outcome")
        if outcome == verdicts.get(row.get("candidate_position")):
            said = "candidate"
        elif outcome == verdicts.get(row.get("champion_position")):
            said = "champion"
        else:
            said = "tie" if outcome in ("tie", "both_bad") else "?"
        row.setdefault("verdicts", []).append(said)
    return [by_task[t] for t in task_ids if t in by_task]


def _run_and_snapshot(version: ModelVersion):
    """The run and snapshot the version came from (registration kept them in its project)."""
    return version.training_run, version.dataset_snapshot


@dataclass
class Lineage:
    version: ModelVersion
    ancestors: list[ModelVersion]
    children: list[ModelVersion]
    run: object | None
    snapshot: object | None
    data_card_html: str
    rounds: list[LoopRound]
    events: list = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)


def model_version_lineage(version: ModelVersion) -> Lineage:
    """Snapshot → run → version → evaluations → review → approval, and the parent chain."""
    run, snapshot = _run_and_snapshot(version)
    card = snapshot.data_card if snapshot is not None else ""
    return Lineage(
        version=version,
        ancestors=selectors.model_version_ancestors(version),
        children=list(version.children.order_by("id")),
        run=run,
        snapshot=snapshot,
        data_card_html=markdown_to_safe_html(card) if card else "",
        rounds=review_rounds(version),
        events=selectors.audit_events(version=version),
        aliases=selectors.aliases_of(version),
    )


def bias_probes(version: ModelVersion) -> list[dict]:
    """A reward model's length and position probes (``rlhf.data.audit.reward_probes``, run by
    its training on each split), one row per split, held-out splits first."""
    rows = []
    for split in ("test", "validation", "train"):
        probes = ((version.metrics or {}).get(split) or {}).get("bias_probes")
        if isinstance(probes, dict):
            rows.append({"split": split, **probes})
    return rows


def decision_evidence(version: ModelVersion) -> dict:
    project = version.project
    summary = selectors.review_summary(candidate=version)
    review = next((r for r in review_rounds(version) if r.kind == RoundKind.REVIEW), None)
    win = summary.win_rate
    chart = {
        "wins": win.wins if win else 0,
        "ties": win.ties if win else 0,
        "losses": win.losses if win else 0,
        "win_rate": win.win_rate if win else None,
        "ci": [win.ci_low, win.ci_high] if win else None,
        "min_win_rate": thresholds(project)["review_min_win_rate"],
    }
    return {
        "summary": summary,
        "champion": selectors.alias_target(project=project),
        "thresholds": thresholds(project),
        "leaderboard": selectors.leaderboard(
            project=project, bootstrap_samples=LEADERBOARD_BOOTSTRAP
        ),
        "round": review,
        "evaluation": review.evaluation if review else {},
        "pairs": sample_pairs(review) if review else [],
        "chart": chart,
        "lineage": model_version_lineage(version),
        "pinned_prompts": len(eval_prompt_ids(project)),
        "bias_probes": bias_probes(version),
    }
