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
from rlhf.runs.selectors import held_out_accuracy

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


def model_version_awaits_decision(version: ModelVersion) -> bool:
    """Whether a reviewer can approve or reject ``version`` now: a policy once its review round
    put it in review; a reward model (which no blind review compares) from its candidacy."""
    return version.state == VersionState.IN_REVIEW or (
        version.kind == VersionKind.REWARD and version.state == VersionState.CANDIDATE
    )


def evaluation_state(version: ModelVersion) -> dict:
    """Whether the evaluation a decision rests on is in, as ``{"status", "message"}``.

    ``finished``; ``pending`` (a policy's review round has not been evaluated yet); ``failed``
    (its evaluation job raised); ``missing`` (a reward model whose training measured no
    held-out pairs: nothing will ever evaluate it); ``none`` (a policy with no review round:
    no evaluation job exists, the decision rests on review labels alone). Approval
    (``services._approval_checks``) refuses ``pending``, ``failed`` and ``missing`` unless the
    approver says they approve without it."""
    if version.kind == VersionKind.REWARD:
        if held_out_accuracy(version.metrics):
            return {"status": "finished", "message": "held-out accuracy measured by training"}
        return {
            "status": "missing",
            "message": "its training measured no held-out preference pairs (no validation or "
            "test split), so there is no accuracy to judge it by",
        }
    if version.kind != VersionKind.POLICY:
        return {"status": "none", "message": "base models are not evaluated"}
    review = next((r for r in review_rounds(version) if r.kind == RoundKind.REVIEW), None)
    if review is None:
        return {"status": "none", "message": "no review round evaluated this version"}
    if review.evaluation:
        return {"status": "finished", "message": f"review round {review.pk} evaluated"}
    if review.evaluation_error:
        return {"status": "failed", "message": f"the evaluation of review round {review.pk} "
                f"failed: {review.evaluation_error[:300]}"}  # fmt: skip
    return {
        "status": "pending",
        "message": f"the evaluation job of review round {review.pk} has not finished yet",
    }


def _number(value):
    if isinstance(value, float):
        return f"{value:.4g}"
    return value


def metrics_table(metrics: dict | None, *, leave_out=("evaluation", "bias_probes")) -> list[dict]:
    """A version's recorded metrics as rows of ``{"name", "value"}`` for a table: nested
    dictionaries flattened to dotted names (``test.accuracy``), lists of numbers joined, floats
    to four significant digits; the tables shown on their own (``leave_out``) left out."""
    rows: list[dict] = []

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                if key not in leave_out:
                    walk(f"{prefix}.{key}" if prefix else str(key), inner)
        elif isinstance(value, list) and all(isinstance(v, int | float) for v in value):
            rows.append({"name": prefix, "value": " to ".join(str(_number(v)) for v in value)})
        elif isinstance(value, list):
            rows.append({"name": prefix, "value": f"{len(value)} items"})
        else:
            rows.append({"name": prefix, "value": "none" if value is None else _number(value)})

    walk("", metrics or {})
    return rows


def kl_shown(value) -> dict | None:
    """A KL estimate as the page shows it. The per-sample estimator (log p - log q on sampled
    tokens) is unbiased but noisy, so a policy close to its parent can average below zero,
    which a true KL never is: the page shows 0 and the raw figure beside it."""
    if not isinstance(value, int | float):
        return None
    return {"shown": max(float(value), 0.0), "raw": float(value), "clipped": value < 0}


def reward_model_evidence(version: ModelVersion) -> dict:
    """What a reward model is judged by: accuracy on the held-out splits with its Wilson
    interval, the calibration of its Bradley-Terry probabilities on each split, the length and
    position probes (``bias_probes``)."""
    calibration = []
    for row in bias_probes(version):
        measured = row.get("calibration")
        if isinstance(measured, dict) and measured.get("pairs"):
            calibration.append({"split": row["split"], **measured})
    return {
        "held_out": held_out_accuracy(version.metrics),
        "calibration": calibration,
    }


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
    evaluation = (review.evaluation if review else None) or {}
    eval_rows = [
        (side, {**evaluation[side], "kl": kl_shown(evaluation[side].get("kl_to_parent"))})
        for side in ("candidate", "champion")
        if isinstance(evaluation.get(side), dict)
    ]
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
        "evaluation_state": evaluation_state(version),
        "metrics_table": metrics_table(version.metrics),
        "reward": reward_model_evidence(version) if version.kind == VersionKind.REWARD else None,
        "eval_rows": eval_rows,
        "kl_clipped": any(row["kl"] and row["kl"]["clipped"] for _, row in eval_rows),
    }
