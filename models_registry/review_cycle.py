"""The automatic human-review cycle: pinned evaluation prompts, review rounds, the next round.

1. ``review_settings.eval_prompts_pin`` fixes the project's evaluation prompt set
   (``options["eval_prompt_ids"]``).
2. When a training run's candidate policy is registered, ``loop_round_start_review`` records a
   review round (pinned prompts + a sample of fresh ones, against the champion as it is now),
   moves the candidate to ``in_review`` (audited) and enqueues ``loop_round_prepare`` after
   commit.
3. ``loop_round_prepare`` (worker, ``generation`` queue) makes both versions answer the prompts
   through ordinary generation jobs, then queues one blind pairwise task per prompt: the
   candidate's canonical side is drawn at random per task and recorded on the round; each
   annotator sees the two answers in an order of their own (the lease's shown order), with no
   model name. It then enqueues ``loop_round_evaluate``: reward-model score, KL to the parent
   and length statistics on the same prompts (``rlhf.training.policy_eval``).
4. Reviewers decide on the decision page (``model_version_approve`` / ``_transition``). An
   approval runs ``loop_round_start_annotation`` inside the approval's transaction (the
   approved-hook ``loop_round_start_next``): the new champion answers fresh prompts twice,
   with different seeds, and those pairs become the next annotation tasks.

Jobs receive ids, are enqueued on commit and are idempotent: a round that is ready is returned
as is; its generation jobs are reused; tasks are found by content hash, never duplicated.

Project options read here (all optional):
``eval_prompt_ids`` (list of prompt ids), ``review_fresh_prompts`` (default 4),
``annotation_round_prompts`` (default 16), ``review_generation`` (GenerationConfig fields,
default 128 new tokens at temperature 0.7), ``review_reward_model_version`` (a reward version
id; default the newest reward version of the project that is not rejected or archived).
"""

from __future__ import annotations

import logging
import random
import statistics
from dataclasses import asdict
from pathlib import Path

from django.db import transaction
from django.utils import timezone

from annotation.models import Project, Prompt, Response, TaskKind
from annotation.services import task_create
from config.errors import Conflict, DomainError, ValidationFailed
from models_registry import selectors
from models_registry.generation import (
    generation_job_create,
    generation_job_run,
    generation_jobs_run_interleaved,
)
from models_registry.models import (
    GenerationJob,
    LoopRound,
    ModelVersion,
    RoundKind,
    RoundStatus,
    VersionKind,
    VersionState,
)
from models_registry.review_selectors import (
    DEFAULT_ANNOTATION_PROMPTS,
    DEFAULT_FRESH_PROMPTS,
    eval_prompt_ids,
    review_option_int,
    review_reward_model,
)
from models_registry.services import model_version_transition

logger = logging.getLogger(__name__)

DEFAULT_GENERATION = {"max_new_tokens": 128, "temperature": 0.7, "top_p": 0.95}
# Review tasks jump the queue: a candidate waits on them, ordinary tasks wait on nothing.
REVIEW_PRIORITY = 10
# The two samples of an annotation round differ by this much in their seeds.
SECOND_SAMPLE_SEED_OFFSET = 1_000_003


def prompts_in_use(project: Project) -> set[int]:
    """Every prompt a round or generation job of ``project`` names, and the pinned evaluation
    prompts: the retention guard (``annotation.services.retention`` never deletes them)."""
    used = set(eval_prompt_ids(project))
    for evaluation, fresh in LoopRound.objects.filter(project=project).values_list(
        "eval_prompt_ids", "fresh_prompt_ids"
    ):
        used.update(evaluation or [], fresh or [])
    for ids in GenerationJob.objects.filter(project=project).values_list("prompt_ids", flat=True):
        used.update(ids or [])
    return {i for i in used if isinstance(i, int)}


def _generation_config(project: Project) -> dict:
    from rlhf.training.generation import GenerationConfig, config_record

    values = {**DEFAULT_GENERATION, **((project.options or {}).get("review_generation") or {})}
    values.pop("seed", None)
    try:
        record = config_record(GenerationConfig(**values))
    except (TypeError, ValueError) as exc:
        raise ValidationFailed(
            f"invalid review_generation option: {exc}", code="invalid_config"
        ) from exc
    record.pop("seed")
    return record


def _fresh_sample(project: Project, *, kind: str, count: int, seed: int) -> list[int]:
    """Unpinned prompts no earlier round of this kind used, ``count`` of them drawn at random."""
    used: set[int] = set(eval_prompt_ids(project))
    for ids in LoopRound.objects.filter(project=project, kind=kind).values_list(
        "fresh_prompt_ids", flat=True
    ):
        used.update(ids)
    candidates = sorted(
        set(Prompt.objects.filter(project=project).values_list("pk", flat=True)) - used
    )
    return sorted(random.Random(seed).sample(candidates, min(count, len(candidates))))


def _enqueue_prepare(round_id: int) -> None:
    from models_registry.tasks import loop_round_prepare_job

    loop_round_prepare_job.enqueue(round_id)


def _enqueue_evaluate(round_id: int) -> None:
    from models_registry.tasks import loop_round_evaluate_job

    loop_round_evaluate_job.enqueue(round_id)


# --------------------------------------------------------------------------- starting rounds


@transaction.atomic
def loop_round_start_review(*, version: ModelVersion, actor=None) -> LoopRound:
    """Put a candidate policy up for blind review against the champion (see the module doc)."""
    version = ModelVersion.objects.select_for_update().select_related("project").get(pk=version.pk)
    project = version.project
    if version.kind != VersionKind.POLICY:
        raise ValidationFailed("only a policy is reviewed by people", code="not_a_policy")
    if version.state != VersionState.CANDIDATE:
        raise Conflict(f"a {version.state} version is not up for review", code="not_a_candidate")
    champion = selectors.alias_target(project=project)
    if champion is None or champion.pk == version.pk:
        raise Conflict("the project has no champion to review against", code="no_champion")
    pinned = eval_prompt_ids(project)
    fresh = _fresh_sample(
        project,
        kind=RoundKind.REVIEW,
        count=review_option_int(project, "review_fresh_prompts", DEFAULT_FRESH_PROMPTS),
        seed=version.pk,
    )
    if not pinned and not fresh:
        raise Conflict("the project has no prompts to review on", code="no_prompts")
    loop_round = LoopRound.objects.create(
        project=project,
        kind=RoundKind.REVIEW,
        version=version,
        opponent=champion,
        eval_prompt_ids=pinned,
        fresh_prompt_ids=fresh,
        generation=_generation_config(project),
        created_by=actor,
    )
    model_version_transition(
        version=version,
        actor=actor,
        to_state=VersionState.IN_REVIEW,
        reason=(
            f"automatic review round {loop_round.pk}: {len(pinned)} pinned and {len(fresh)} "
            f"fresh prompts against {champion.label}"
        ),
        evidence={"loop_round": loop_round.pk, "opponent_version": champion.pk},
    )
    transaction.on_commit(lambda: _enqueue_prepare(loop_round.pk))
    return loop_round


@transaction.atomic
def loop_round_start_annotation(*, version: ModelVersion, actor=None) -> LoopRound | None:
    """The champion answers fresh prompts twice; the pairs become annotation tasks (after
    commit, in a worker). None when no fresh prompt is left."""
    version = ModelVersion.objects.select_related("project").get(pk=version.pk)
    project = version.project
    champion = selectors.alias_target(project=project)
    if champion is None or champion.pk != version.pk:
        raise Conflict("only the champion writes the next annotation round", code="not_champion")
    fresh = _fresh_sample(
        project,
        kind=RoundKind.ANNOTATION,
        count=review_option_int(project, "annotation_round_prompts", DEFAULT_ANNOTATION_PROMPTS),
        seed=version.pk,
    )
    if not fresh:
        return None
    loop_round = LoopRound.objects.create(
        project=project,
        kind=RoundKind.ANNOTATION,
        version=version,
        fresh_prompt_ids=fresh,
        generation=_generation_config(project),
        created_by=actor,
    )
    transaction.on_commit(lambda: _enqueue_prepare(loop_round.pk))
    return loop_round


def loop_round_start_next(version: ModelVersion, actor) -> None:
    """``services.version_approved_hooks`` entry: the new champion starts the next round.
    A round that cannot start (a bad ``review_generation`` option) does not undo the approval."""
    try:
        loop_round_start_annotation(version=version, actor=actor)
    except DomainError as exc:
        logger.warning("no annotation round after approving %s: %s", version.pk, exc.message)


# --------------------------------------------------------------------------- preparing rounds


def _seed(loop_round: LoopRound, version: ModelVersion) -> int:
    """Each version samples with a seed of its own: a candidate barely moved from the champion
    would otherwise write the champion's very words on a shared seed, and make no pair."""
    return loop_round.pk * 1_000 + (1 if version.pk == loop_round.opponent_id else 0)


def _job_for(loop_round: LoopRound, version: ModelVersion, seed: int) -> GenerationJob:
    """The round's generation job for (version, seed), created once and reused on retries."""
    for job in GenerationJob.objects.filter(pk__in=loop_round.generation_job_ids, version=version):
        if job.config.get("seed") == seed:
            return job
    job = generation_job_create(
        version=version,
        prompt_ids=loop_round.prompt_ids,
        config={**loop_round.generation, "seed": seed},
        created_by=loop_round.created_by,
        enqueue=False,
    )
    loop_round.generation_job_ids = [*loop_round.generation_job_ids, job.pk]
    LoopRound.objects.filter(pk=loop_round.pk).update(
        generation_job_ids=loop_round.generation_job_ids
    )
    return job


def _answers(job: GenerationJob) -> dict[int, Response]:
    """prompt id -> the response this job wrote (a response another job wrote first, with the
    same text, counts for the prompt only when this job is its recorded writer)."""
    version = job.version
    responses = Response.objects.filter(
        prompt_id__in=job.prompt_ids, model_name=version.response_model_name
    ).order_by("id")
    return {r.prompt_id: r for r in responses if r.generation.get("generation_job_id") == job.pk}


def _newest_answers(version: ModelVersion, prompt_ids: list[int]) -> dict[int, Response]:
    out: dict[int, Response] = {}
    for r in Response.objects.filter(
        prompt_id__in=prompt_ids, model_name=version.response_model_name
    ).order_by("id"):
        out[r.prompt_id] = r
    return out


def _pair_task(loop_round, prompt: Prompt, first: Response, second: Response):
    task, _ = task_create(
        project=loop_round.project,
        messages=prompt.messages,
        kind=TaskKind.PAIRWISE,
        responses=[
            {"text": r.text, "origin": r.origin, "model_name": r.model_name}
            for r in (first, second)
        ],
        source=f"{loop_round.kind} round {loop_round.pk}",
        priority=REVIEW_PRIORITY if loop_round.kind == RoundKind.REVIEW else 0,
        metadata={"loop_round": loop_round.pk},
    )
    return task


def _prepare_review(loop_round: LoopRound) -> None:
    candidate, champion = loop_round.version, loop_round.opponent
    jobs = [_job_for(loop_round, v, _seed(loop_round, v)) for v in (candidate, champion)]
    # Both versions answer before anything is stored, then each prompt's two answers are
    # written in a drawn order: response ids do not tell the candidate from the champion.
    generation_jobs_run_interleaved(
        job_ids=[job.pk for job in jobs], order_seed=f"review round {loop_round.pk}"
    )
    prompt_ids = loop_round.prompt_ids
    prompts = Prompt.objects.in_bulk(prompt_ids)
    mine = {**_newest_answers(candidate, prompt_ids), **_answers(jobs[0])}
    theirs = {**_newest_answers(champion, prompt_ids), **_answers(jobs[1])}
    task_ids, positions, skipped = [], {}, []
    with transaction.atomic():
        for prompt_id in prompt_ids:
            ours, other = mine.get(prompt_id), theirs.get(prompt_id)
            if ours is None or other is None:
                skipped.append({"prompt": prompt_id, "why": "no response"})
                continue
            if ours.content_hash == other.content_hash:
                skipped.append({"prompt": prompt_id, "why": "both versions wrote the same text"})
                continue
            # The side is drawn per (round, prompt): a retry draws the same side.
            position = random.Random(f"{loop_round.pk}:{prompt_id}").randrange(2)
            pair = (ours, other) if position == 0 else (other, ours)
            task = _pair_task(loop_round, prompts[prompt_id], *pair)
            task_ids.append(task.pk)
            positions[str(task.pk)] = position
        LoopRound.objects.filter(pk=loop_round.pk).update(
            task_ids=task_ids,
            candidate_positions=positions,
            skipped=skipped,
            status=RoundStatus.READY,
            finished_at=timezone.now(),
        )
        transaction.on_commit(lambda: _enqueue_evaluate(loop_round.pk))


def _prepare_annotation(loop_round: LoopRound) -> None:
    champion = loop_round.version
    seed = _seed(loop_round, champion)
    jobs = [_job_for(loop_round, champion, s) for s in (seed, seed + SECOND_SAMPLE_SEED_OFFSET)]
    for job in jobs:
        generation_job_run(job_id=job.pk)
    first, second = _answers(jobs[0]), _answers(jobs[1])
    prompts = Prompt.objects.in_bulk(loop_round.prompt_ids)
    task_ids, skipped = [], []
    with transaction.atomic():
        for prompt_id in loop_round.prompt_ids:
            a, b = first.get(prompt_id), second.get(prompt_id)
            if a is None or b is None:
                # Two identical samples are one Response row, written by the first job.
                skipped.append({"prompt": prompt_id, "why": "the two samples are identical"})
                continue
            task_ids.append(_pair_task(loop_round, prompts[prompt_id], a, b).pk)
        LoopRound.objects.filter(pk=loop_round.pk).update(
            task_ids=task_ids,
            skipped=skipped,
            status=RoundStatus.READY,
            finished_at=timezone.now(),
        )


def loop_round_prepare(*, round_id: int) -> LoopRound:
    """Generate the round's responses and queue its tasks (worker; idempotent)."""
    with transaction.atomic():
        loop_round = LoopRound.objects.select_for_update().get(pk=round_id)
        if loop_round.status == RoundStatus.READY:
            return loop_round
        loop_round.status = RoundStatus.GENERATING
        loop_round.error = ""
        loop_round.save(update_fields=["status", "error"])
    loop_round = LoopRound.objects.select_related("project", "version", "opponent").get(pk=round_id)
    try:
        if loop_round.kind == RoundKind.REVIEW:
            _prepare_review(loop_round)
        else:
            _prepare_annotation(loop_round)
    except Exception as exc:
        LoopRound.objects.filter(pk=round_id).update(
            status=RoundStatus.FAILED, error=f"{type(exc).__name__}: {exc}"[:4000]
        )
        raise
    return LoopRound.objects.get(pk=round_id)


# --------------------------------------------------------------------------- evaluation


def _folder(version: ModelVersion | None) -> Path | None:
    return Path(version.artifact_dir) if version is not None else None


def _text_lengths(responses: list[Response]) -> dict:
    chars = [len(r.text) for r in responses]
    tokens = [r.generation.get("new_tokens") for r in responses]
    tokens = [t for t in tokens if isinstance(t, int)]
    if not chars:
        return {"responses": 0}
    return {
        "responses": len(chars),
        "chars_mean": round(statistics.fmean(chars), 2),
        "chars_median": statistics.median(chars),
        "tokens_mean": round(statistics.fmean(tokens), 2) if tokens else None,
    }


def _evaluation_record(evaluation) -> dict:
    out = {"prompts": evaluation.prompts, "lengths": asdict(evaluation.lengths)}
    if evaluation.reward is not None:
        out["reward_mean"] = round(evaluation.reward.mean, 6)
        out["reward_std"] = round(evaluation.reward.std, 6)
    if evaluation.kl_to_reference is not None:
        out["kl_to_parent"] = round(evaluation.kl_to_reference.mean, 6)
        out["kl_to_parent_per_token"] = round(evaluation.kl_to_reference.per_token_mean, 6)
    return out


def _reward_accuracy(candidate: ModelVersion, reward_version: ModelVersion | None) -> dict | None:
    """Held-out pairwise accuracy of the round's reward model ("after") and of the reward model
    before it ("before": the newest earlier reward version that is not rejected or archived) on
    the SAME pairs: the test split of the snapshot the candidate trained on, which neither the
    round's reward model nor the candidate saw. None without a reward model or test pairs."""
    from rlhf.training.evaluation import evaluate_reward

    snapshot = candidate.dataset_snapshot
    if reward_version is None or snapshot is None or not snapshot.export_path:
        return None
    test_file = Path(snapshot.export_path) / "preference" / "test.jsonl"
    if not test_file.is_file() or test_file.stat().st_size == 0:
        return None
    before = (
        ModelVersion.objects.filter(
            project_id=candidate.project_id, kind=VersionKind.REWARD, pk__lt=reward_version.pk
        )
        .exclude(state__in=[VersionState.REJECTED, VersionState.ARCHIVED])
        .order_by("-id")
        .first()
    )
    out: dict = {"snapshot": snapshot.pk, "split": "test"}
    for key, version in (("after", reward_version), ("before", before)):
        if version is None:
            out[key] = None
            continue
        result = evaluate_reward(_folder(version), test_file)
        out["pairs"] = result["pairs"]
        out[key] = {
            "version": version.pk,
            "label": version.label,
            "accuracy": round(result["accuracy"], 6),
            "accuracy_ci95": [round(x, 6) for x in result["accuracy_ci95"]],
        }
    return out


def loop_round_evaluate(*, round_id: int) -> LoopRound:
    """Reward, KL to the parent and lengths of both versions on the round's prompts (worker;
    idempotent). The same generation settings and seeds as the review tasks, so on the
    transformers backend the evaluated answers are the ones reviewers see. Also the reward
    model's held-out accuracy before and after the round (``_reward_accuracy``)."""
    from rlhf.training.generation import GenerationConfig
    from rlhf.training.policy_eval import evaluate_policy_folder

    loop_round = LoopRound.objects.select_related(
        "project", "version__dataset_snapshot", "opponent"
    ).get(pk=round_id)
    if loop_round.kind != RoundKind.REVIEW or loop_round.evaluation:
        return loop_round
    candidate, champion = loop_round.version, loop_round.opponent
    prompts = Prompt.objects.in_bulk(loop_round.prompt_ids)
    conversations = [prompts[i].messages for i in loop_round.prompt_ids if i in prompts]
    reward_version = review_reward_model(loop_round.project)
    shown = {candidate.pk: [], champion.pk: []}
    by_name = {
        candidate.response_model_name: candidate.pk,
        champion.response_model_name: champion.pk,
    }
    for r in Response.objects.filter(task_items__task_id__in=loop_round.task_ids).distinct():
        if r.model_name in by_name:
            shown[by_name[r.model_name]].append(r)
    try:
        results = {}
        for role, version in (("candidate", candidate), ("champion", champion)):
            generation = GenerationConfig(
                **{**loop_round.generation, "seed": _seed(loop_round, version)}
            )
            evaluation = evaluate_policy_folder(
                _folder(version),
                conversations,
                generation,
                reward_model_dir=_folder(reward_version),
                reference_dir=_folder(version.parent),
            )
            results[role] = {
                "version": version.pk,
                **_evaluation_record(evaluation),
                "shown_lengths": _text_lengths(shown[version.pk]),
            }
        reward_accuracy = _reward_accuracy(candidate, reward_version)
    except Exception as exc:
        logger.exception("evaluation of loop round %s failed", round_id)
        LoopRound.objects.filter(pk=round_id).update(
            evaluation_error=f"{type(exc).__name__}: {exc}"[:4000]
        )
        raise
    record = {
        "reward_model": (
            {"id": reward_version.pk, "label": reward_version.label} if reward_version else None
        ),
        "kl_reference": "each version's parent",
        "reward_accuracy": reward_accuracy,
        **results,
    }
    with transaction.atomic():
        LoopRound.objects.filter(pk=round_id).update(evaluation=record, evaluation_error="")
        locked = ModelVersion.objects.select_for_update().get(pk=candidate.pk)
        locked.metrics = {
            **(locked.metrics or {}),
            "evaluation": {**results["candidate"], "loop_round": round_id},
        }
        locked.save(update_fields=["metrics", "updated_at"])
    return LoopRound.objects.get(pk=round_id)
