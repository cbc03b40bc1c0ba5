"""The next annotation round in effect: open pairs ranked by what their labels would teach.

``task_priorities_assign`` scores a project's open pairwise tasks that nobody has labelled
with the current reward model (``rlhf.training.active``), writes ``Task.priority`` so claims
(``priority DESC, id``) serve the most informative pairs first, and records the strategy and
score of each task in ``TaskSelectionScore``. Annotators see none of it: their task view
names no priority and no score (a reward gap beside a pair would anchor the judgement).

Ranked tasks get priorities ``-1`` (first) down to ``-count``: below every task nobody ranked
(priority 0, e.g. pairs that arrived after the ranking, which are then served first as an
unbiased sample) and below review rounds (which jump the queue on purpose). Gold tasks and
tasks with a positive priority are not ranked: they keep theirs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from django.db import transaction

from annotation.models import Label, Project, Task, TaskItem, TaskKind, TaskStatus
from rlhf.models import TaskSelectionScore
from rlhf.training import active, head_probe
from rlhf.training.loading import (
    check_model_folder,
    load_sequence_classifier,
    load_tokenizer,
    quiet_transformers,
)

MAX_LENGTH = 512  # tokens per scored response, as the encoder reward trainer's default
MIN_LABELLED_PAIRS = 10  # disagreement refits its ensemble on these; fewer is noise


@dataclass(frozen=True)
class PriorityAssignment:
    strategy: str
    tasks: int
    labelled_pairs: int  # the pairs the ensemble was refitted on (disagreement only)
    reward_model: str


def _candidates(project: Project) -> list[Task]:
    return list(
        Task.objects.filter(
            project=project,
            kind=TaskKind.PAIRWISE,
            status=TaskStatus.OPEN,
            label_count=0,
            gold__isnull=True,
            priority__lte=0,  # a positive priority was set on purpose (review rounds)
        )
        .select_related("prompt")
        .order_by("id")
    )


def _pair_texts(tasks: list[Task]) -> list[tuple[list[dict], str, str]]:
    items: dict[int, dict[int, str]] = {}
    for item in TaskItem.objects.filter(task__in=tasks).select_related("response"):
        items.setdefault(item.task_id, {})[item.position] = item.response.text
    return [(task.prompt.messages, items[task.pk][0], items[task.pk][1]) for task in tasks]


def _labelled_pairs(project: Project) -> list[tuple[list[dict], str, str]]:
    """``(prompt, chosen, rejected)`` of every pairwise label with a winner in the project."""
    pairs = []
    labels = Label.objects.filter(
        task__project=project, task__kind=TaskKind.PAIRWISE, payload__outcome__in=["A", "B"]
    ).select_related("task__prompt")
    texts = {
        item.response_id: item.response.text
        for item in TaskItem.objects.filter(
            task__project=project, task__kind=TaskKind.PAIRWISE
        ).select_related("response")
    }
    sides: dict[int, list[int]] = {}
    for item in TaskItem.objects.filter(task__project=project, task__kind=TaskKind.PAIRWISE):
        sides.setdefault(item.task_id, []).append(item.response_id)
    for label in labels:
        winner = label.payload.get("winner")
        loser = next((r for r in sides.get(label.task_id, []) if r != winner), None)
        if winner in texts and loser in texts:
            pairs.append((label.task.prompt.messages, texts[winner], texts[loser]))
    return pairs


def _scores(
    config: active.SelectionConfig, folder: str, candidates, labelled, *, device: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(informativeness per pair, the model's reward of side A, of side B): the rewards are
    recorded for feedback after labelling (``rlhf.feedback``), never shown before."""
    path = check_model_folder(folder)
    with quiet_transformers():
        tokenizer = load_tokenizer(path)
        model = load_sequence_classifier(path, pad_token_id=tokenizer.pad_token_id)
    found = head_probe.linear_head(model)
    if found is None:
        raise ValueError("the reward model's head is not a single linear layer")
    _, head = found
    model.to(device)
    features = {"max_length": MAX_LENGTH, "device": device}
    side_a, side_b = active.response_features(model, tokenizer, candidates, **features)
    with torch.no_grad():  # the model's own head: one forward pass gave both features and r
        reward_a = head(side_a.to(head.weight))[:, 0].double().cpu()
        reward_b = head(side_b.to(head.weight))[:, 0].double().cpu()
    if config.strategy in ("uncertainty", "mix"):
        return active.uncertainty_scores(reward_a, reward_b), reward_a, reward_b
    chosen, rejected = active.response_features(model, tokenizer, labelled, **features)
    reward = active.fit_linear_reward(chosen.cpu(), rejected.cpu(), seed=config.seed)
    scores = active.pair_scores(
        config,
        reward,
        features_a=side_a.cpu(),
        features_b=side_b.cpu(),
        labelled_chosen=chosen.cpu(),
        labelled_rejected=rejected.cpu(),
    )
    return scores, reward_a, reward_b


def task_priorities_assign(
    *,
    project: Project,
    strategy: str = "random",
    reward_model_folder: str = "",
    random_share: float = 0.3,
    ensemble_size: int = 8,
    seed: int = 0,
    device: str = "cpu",
) -> PriorityAssignment:
    """Rank the project's open, unlabelled pairwise tasks and write their priorities.

    ``random`` needs no model; the other strategies score with the reward model in
    ``reward_model_folder`` (``disagreement`` also refits its ensemble on the project's
    labelled pairs). Raises ``ValueError`` for a bad strategy, a missing model or too few
    labelled pairs; then nothing is written.
    """
    config = active.SelectionConfig(
        strategy=strategy, random_share=random_share, ensemble_size=ensemble_size, seed=seed
    )
    if errors := config.validate():
        raise ValueError("; ".join(errors))
    if strategy != "random" and not reward_model_folder:
        raise ValueError(f"{strategy} needs a reward model folder")
    tasks = _candidates(project)
    labelled = _labelled_pairs(project) if strategy == "disagreement" else []
    if strategy == "disagreement" and len(labelled) < MIN_LABELLED_PAIRS:
        raise ValueError(
            f"disagreement needs {MIN_LABELLED_PAIRS} labelled pairs, the project has "
            f"{len(labelled)}"
        )
    scores = reward_a = reward_b = None
    if tasks and strategy != "random":
        scores, reward_a, reward_b = _scores(
            config, reward_model_folder, _pair_texts(tasks), labelled, device=device
        )
    order = active.selection_order(config, count=len(tasks), scores=scores)
    ranked = active.priorities(order)
    with transaction.atomic():
        for task, value in zip(tasks, ranked, strict=True):
            task.priority = value - len(tasks) - 1  # -1 first ... -count last
        Task.objects.bulk_update(tasks, ["priority"], batch_size=1000)
        TaskSelectionScore.objects.bulk_create(
            TaskSelectionScore(
                task=task,
                strategy=strategy,
                score=None if scores is None else float(scores[i]),
                reward_a=None if reward_a is None else float(reward_a[i]),
                reward_b=None if reward_b is None else float(reward_b[i]),
                priority=task.priority,
                reward_model=reward_model_folder if strategy != "random" else "",
                config=config.as_dict(),
            )
            for i, task in enumerate(tasks)
        )
    return PriorityAssignment(
        strategy=strategy,
        tasks=len(tasks),
        labelled_pairs=len(labelled),
        reward_model=reward_model_folder if strategy != "random" else "",
    )
