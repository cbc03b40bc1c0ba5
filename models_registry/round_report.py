"""What a round bought: the figures of one review round, and the series across a project's rounds.

One reading for the round page, the rounds chart, ``manage.py loop`` and ``bench/loop_effect.py``:

- **labels**: the labels in the snapshot the candidate trained on (``labels_total``) and how many
  more than the previous review round's candidate trained on (``labels_spent``; all of them for
  a project's first round);
- **reward-model accuracy before/after**: the round's evaluation
  (``review_cycle._reward_accuracy``): the previous and the round's reward model scored on the
  same held-out pairs (the candidate's snapshot's test split);
- **reward, KL, lengths**: the round's evaluation on its prompts (pinned and fresh):
  ``reward_gain`` is the candidate's mean reward minus the champion's under the round's reward
  model, ``kl_to_parent`` the candidate's summed log-ratio to its parent per answer (nats),
  ``length_ratio`` the candidate's mean new tokens over the champion's (length hacking shows
  here first);
- **blind win rate**: the review labels of the candidate against the round's opponent
  (``selectors.review_summary``: ties half a win, 95% Wilson interval), once there are any.
"""

from __future__ import annotations

from annotation.models import Project
from models_registry import selectors
from models_registry.models import LoopRound, RoundKind


def _round(value, digits: int = 4):
    return round(value, digits) if isinstance(value, int | float) else None


def _labels_in(round_: LoopRound) -> int | None:
    snapshot = round_.version.dataset_snapshot
    return snapshot.label_count if snapshot is not None else None


def _previous_review(loop_round: LoopRound) -> LoopRound | None:
    return (
        LoopRound.objects.filter(
            project_id=loop_round.project_id, kind=RoundKind.REVIEW, pk__lt=loop_round.pk
        )
        .select_related("version__dataset_snapshot")
        .order_by("-id")
        .first()
    )


def loop_round_report(loop_round: LoopRound) -> dict:
    """The figures of one review round (see the module doc); a figure not measured is None."""
    evaluation = loop_round.evaluation or {}
    candidate = evaluation.get("candidate") or {}
    champion = evaluation.get("champion") or {}
    labels_total = _labels_in(loop_round)
    previous = _previous_review(loop_round)
    before = _labels_in(previous) if previous is not None else 0
    labels_spent = (
        labels_total - before if labels_total is not None and before is not None else None
    )
    reward_gain = None
    if "reward_mean" in candidate and "reward_mean" in champion:
        reward_gain = candidate["reward_mean"] - champion["reward_mean"]
    lengths = (
        (candidate.get("lengths") or {}).get("mean"),
        (champion.get("lengths") or {}).get("mean"),
    )
    length_ratio = lengths[0] / lengths[1] if all(lengths) else None
    accuracy = evaluation.get("reward_accuracy") or {}
    win = None
    reviews = 0
    if loop_round.opponent_id is not None:
        summary = selectors.review_summary(
            candidate=loop_round.version, opponent=loop_round.opponent
        )
        reviews = summary.labels
        if summary.win_rate is not None:
            win = summary.win_rate
    return {
        "round": loop_round.pk,
        "version": loop_round.version,
        "opponent": loop_round.opponent,
        "evaluated": bool(evaluation),
        "prompts": candidate.get("prompts"),
        "labels_total": labels_total,
        "labels_spent": labels_spent,
        "reward_accuracy": {
            "pairs": accuracy.get("pairs"),
            "before": _round((accuracy.get("before") or {}).get("accuracy")),
            "after": _round((accuracy.get("after") or {}).get("accuracy")),
        },
        "reward_candidate": _round(candidate.get("reward_mean")),
        "reward_champion": _round(champion.get("reward_mean")),
        "reward_gain": _round(reward_gain),
        "kl_to_parent": _round(candidate.get("kl_to_parent")),
        "length_candidate": _round(lengths[0], 2),
        "length_champion": _round(lengths[1], 2),
        "length_ratio": _round(length_ratio),
        "reviews": reviews,
        "win_rate": _round(win.win_rate) if win else None,
        "win_rate_ci": [_round(win.ci_low), _round(win.ci_high)] if win else None,
    }


def loop_round_series(project: Project) -> list[dict]:
    """``loop_round_report`` of every review round of the project, oldest first."""
    rounds = (
        LoopRound.objects.filter(project=project, kind=RoundKind.REVIEW)
        .select_related("project", "version__dataset_snapshot", "opponent")
        .order_by("id")
    )
    return [loop_round_report(r) for r in rounds]


def loop_round_chart(series: list[dict]) -> dict:
    """Chart.js points: reward-model accuracy and blind win rate against labels in the snapshot
    (rounds without the figure are left out of that line)."""
    return {
        "accuracy": [
            {"x": r["labels_total"], "y": r["reward_accuracy"]["after"], "round": r["round"]}
            for r in series
            if r["labels_total"] is not None and r["reward_accuracy"]["after"] is not None
        ],
        "win_rate": [
            {
                "x": r["labels_total"],
                "y": r["win_rate"],
                "low": r["win_rate_ci"][0],
                "high": r["win_rate_ci"][1],
                "round": r["round"],
            }
            for r in series
            if r["labels_total"] is not None and r["win_rate"] is not None
        ],
    }


def loop_round_lines(report: dict) -> list[str]:
    """The report as text (``manage.py loop``)."""

    def figure(value, fmt="{:.3f}"):
        return "—" if value is None else fmt.format(value)

    accuracy = report["reward_accuracy"]
    win = (
        f"{figure(report['win_rate'])} (95% CI {figure(report['win_rate_ci'][0])}-"
        f"{figure(report['win_rate_ci'][1])}, {report['reviews']} reviews)"
        if report["win_rate"] is not None
        else "no reviews yet"
    )
    return [
        f"round {report['round']}: {report['version'].label} against "
        f"{report['opponent'].label if report['opponent'] else '—'}",
        f"  labels spent: {figure(report['labels_spent'], '{}')} "
        f"({figure(report['labels_total'], '{}')} in the snapshot)",
        f"  reward-model held-out accuracy: before {figure(accuracy['before'])}, after "
        f"{figure(accuracy['after'])} ({figure(accuracy['pairs'], '{}')} test pairs)",
        f"  mean reward: candidate {figure(report['reward_candidate'])}, champion "
        f"{figure(report['reward_champion'])} (gain {figure(report['reward_gain'], '{:+.3f}')})",
        f"  KL to parent: {figure(report['kl_to_parent'])} nats per answer",
        f"  length: {figure(report['length_candidate'], '{:.1f}')} vs "
        f"{figure(report['length_champion'], '{:.1f}')} tokens "
        f"(ratio {figure(report['length_ratio'], '{:.2f}')})",
        f"  blind win rate: {win}",
    ]
