"""The champion proposes data that people confirm: prompt variants and corrections.

``proposal_job_create`` queues a generation job (``models_registry.generation``) whose
purpose is a proposal: ``prompt_variant`` (``variants`` rewordings of each prompt, response i
sampled with seed ``config.seed + i``, so every variant has its own recorded seed) or
``correction`` (a draft rewrite of each rejected response). The job's worker turns the
samples into ``annotation.Proposal`` rows with a ``confirm`` task each
(``annotation.services.proposals_store``); only what a person confirms enters the pool.

Pinned evaluation prompts are never varied nor their answers corrected: a confirmed variant
of an evaluation prompt would carry it into training under another id.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.core.paginator import Paginator
from django.db.models import Count

from annotation.models import (
    Label,
    Project,
    Prompt,
    Proposal,
    ProposalKind,
    ProposalStatus,
    Response,
    TaskItem,
    TaskKind,
)
from annotation.services import proposals_store
from config.errors import Conflict, ValidationFailed
from models_registry.generation import generation_job_create
from models_registry.models import GenerationJob, GenerationPurpose, ModelVersion
from models_registry.review_selectors import eval_prompt_ids
from models_registry.selectors import alias_target

MAX_VARIANTS = 8
MAX_SOURCES = 500
DEFAULT_SOURCES = 20
SCANNED_LABELS_PER_SOURCE = 20

# A 135M instruct model given only an instruction mostly ANSWERS the request instead of
# rewording it (SmolLM2-135M-Instruct, by hand: 4 of 4 samples answered). A system line and
# two worked examples as earlier turns helped: at temperature 0.7, 4 of 4 were rewordings
# (one verbatim, which proposals_record drops); at 0.9 on three prompts, 2 of 6 clean, 1
# partial, 3 answers or drift, and its one correction draft was off-topic. So a small
# champion proposes noisily, which is why a person confirms every proposal.
VARIANT_SYSTEM = "You reword requests. You never answer them."
VARIANT_EXAMPLES = (
    ("How do I bake bread at home?", "What is the way to make bread in my own kitchen?"),
    ("Which planet is closest to the sun?", "What planet orbits nearest to the sun?"),
)
CORRECTION_SYSTEM = "You rewrite rejected answers into good ones. Reply with the answer only."
CORRECTION_INSTRUCTION = (
    "A reviewer rejected the answer below. Write a better answer to the same conversation: "
    "correct, helpful and harmless.\n\nConversation:\n{conversation}\n\n"
    "Rejected answer:\n{answer}"
)


def _last_user_turn(messages: list[dict]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return message["content"]
    return messages[-1]["content"] if messages else ""


def _conversation(messages: list[dict]) -> str:
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages)


def variant_instruction(messages: list[dict]) -> list[dict]:
    """The conversation a policy continues with a rewording of the last user turn."""
    turns = [{"role": "system", "content": VARIANT_SYSTEM}]
    for request, reworded in VARIANT_EXAMPLES:
        turns += [
            {"role": "user", "content": f"Reword: {request}"},
            {"role": "assistant", "content": reworded},
        ]
    return [*turns, {"role": "user", "content": f"Reword: {_last_user_turn(messages)}"}]


def correction_instruction(messages: list[dict], answer: str) -> list[dict]:
    text = CORRECTION_INSTRUCTION.format(conversation=_conversation(messages), answer=answer)
    return [{"role": "system", "content": CORRECTION_SYSTEM}, {"role": "user", "content": text}]


def _same_text(a: str, b: str) -> bool:
    return " ".join(a.casefold().split()) == " ".join(b.casefold().split())


# --- reads --------------------------------------------------------------------------------


def rejected_response_ids(*, project: Project, limit: int) -> list[int]:
    """Responses people rejected, newest label first: the loser of a pairwise label with a
    winner, or both sides of a "both bad"; not already given a correction proposal, not on
    a pinned evaluation prompt."""
    excluded = set(eval_prompt_ids(project))
    proposed = set(
        Proposal.objects.filter(project=project, kind=ProposalKind.CORRECTION).values_list(
            "source_response_id", flat=True
        )
    )
    # The newest labels only (a bounded read in a web request): a project whose recent
    # rejected answers all have proposals already gets fewer than ``limit``.
    labels = list(
        Label.objects.filter(
            task__project=project,
            kind=TaskKind.PAIRWISE,
            payload__outcome__in=["A", "B", "both_bad"],
        )
        .exclude(task__prompt_id__in=excluded)
        .order_by("-id")
        .values_list("task_id", "payload")[: SCANNED_LABELS_PER_SOURCE * limit]
    )
    sides: dict[int, list[int]] = {}
    items = TaskItem.objects.filter(task_id__in={task_id for task_id, _ in labels})
    for task_id, response_id in items.order_by("position").values_list("task_id", "response_id"):
        sides.setdefault(task_id, []).append(response_id)
    found: list[int] = []
    for task_id, payload in labels:
        for response_id in sides.get(task_id, ()):
            rejected = payload.get("winner") != response_id
            if rejected and response_id not in proposed and response_id not in found:
                found.append(response_id)
    return found[:limit]


def variant_source_ids(*, project: Project, limit: int) -> list[int]:
    """Prompts to vary when none are named: the newest that are no variant themselves, no
    pinned evaluation prompt, and not varied before."""
    varied = Proposal.objects.filter(project=project, kind=ProposalKind.PROMPT_VARIANT)
    return list(
        Prompt.objects.filter(project=project, source_prompt__isnull=True)
        .exclude(pk__in=eval_prompt_ids(project))
        .exclude(pk__in=varied.values("source_prompt_id"))
        .order_by("-id")
        .values_list("pk", flat=True)[:limit]
    )


def proposal_list(*, project: Project, limit: int = 200) -> list[Proposal]:
    return list(Proposal.objects.filter(project=project).order_by("-id")[:limit])


PROPOSAL_PAGE_SIZE = 50


@dataclass(frozen=True)
class ProposalPage:
    proposals: list[Proposal]
    number: int
    pages: int
    total: int


def proposal_page(
    *, project: Project, kind: str = "", status: str = "", page: int = 1,
    per_page: int = PROPOSAL_PAGE_SIZE,
) -> ProposalPage:  # fmt: skip
    """One page of the project's proposals, newest first, filtered on the server, with their
    source texts and who decided them. A page past the last is the last page."""
    rows = Proposal.objects.filter(project=project)
    if kind:
        rows = rows.filter(kind=kind)
    if status:
        rows = rows.filter(status=status)
    rows = rows.select_related("source_prompt", "source_response", "decided_by").order_by("-id")
    current = Paginator(rows, per_page).get_page(page)
    return ProposalPage(
        proposals=list(current.object_list),
        number=current.number,
        pages=current.paginator.num_pages,
        total=current.paginator.count,
    )


def proposal_counts(*, project: Project) -> dict[str, dict[str, int]]:
    """{kind: {status: count}} of the project's proposals, every kind and status present."""
    counts = {k: dict.fromkeys(ProposalStatus.values, 0) for k in ProposalKind.values}
    rows = Proposal.objects.filter(project=project).values("kind", "status")
    for kind, state, n in rows.annotate(n=Count("id")).values_list("kind", "status", "n"):
        counts[kind][state] = n
    return counts


# --- writes -------------------------------------------------------------------------------


def _whole(value, field: str, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise ValidationFailed(f"{field} must be a whole number from 1 to {high}", field=field)


def _ids(value, field: str) -> list[int]:
    if value is None:
        return []
    if not isinstance(value, list) or any(
        isinstance(i, bool) or not isinstance(i, int) for i in value
    ):
        raise ValidationFailed(f"{field} must be a list of ids", field=field)
    if len(value) > MAX_SOURCES:
        raise ValidationFailed(f"{field} takes at most {MAX_SOURCES} ids", field=field)
    return list(dict.fromkeys(value))


def proposal_job_create(
    *,
    project: Project,
    kind: str,
    version: ModelVersion | None = None,
    prompt_ids: list[int] | None = None,
    response_ids: list[int] | None = None,
    variants: int = 2,
    limit: int = DEFAULT_SOURCES,
    config: dict | None = None,
    created_by=None,
    enqueue: bool = True,
) -> GenerationJob:
    """Queue the champion (or ``version``) proposing ``kind`` data; see the module docstring.
    Sources default to the newest eligible ones (``limit``); named sources are checked
    (this project's, not a pinned evaluation prompt) and a bad one is a 400 naming its field."""
    if kind not in ProposalKind.values:
        raise ValidationFailed(f"kind must be one of {ProposalKind.values}", field="kind")
    _whole(variants, "variants", MAX_VARIANTS)
    _whole(limit, "limit", MAX_SOURCES)
    if version is None:
        version = alias_target(project=project)
        if version is None:
            raise Conflict("the project has no champion to propose with", code="no_champion")
    elif version.project_id != project.pk:
        raise ValidationFailed("version_id: not one of this project's", field="version_id")
    pinned = set(eval_prompt_ids(project))
    responses: list[int] = []
    if kind == ProposalKind.PROMPT_VARIANT:
        prompts = _ids(prompt_ids, "prompt_ids") or variant_source_ids(project=project, limit=limit)
        if pinned & set(prompts):
            refused = sorted(pinned & set(prompts))
            raise ValidationFailed(
                f"prompt_ids: pinned evaluation prompts are never varied: {refused}",
                field="prompt_ids",
            )
    else:
        responses = _ids(response_ids, "response_ids") or rejected_response_ids(
            project=project, limit=limit
        )
        rows = dict(
            Response.objects.filter(pk__in=responses, prompt__project=project).values_list(
                "pk", "prompt_id"
            )
        )
        missing = [i for i in responses if i not in rows]
        if missing:
            raise ValidationFailed(
                f"response_ids: not responses of this project: {missing[:10]}",
                field="response_ids",
            )
        if pinned & set(rows.values()):
            raise ValidationFailed(
                "response_ids: answers to pinned evaluation prompts are never corrected",
                field="response_ids",
            )
        prompts = list(dict.fromkeys(rows[i] for i in responses))
    if not prompts:
        raise Conflict(f"nothing to propose {kind} data for", code="no_sources")
    return generation_job_create(
        version=version,
        prompt_ids=prompts,
        config=config,
        created_by=created_by,
        enqueue=enqueue,
        purpose=kind,
        variants=variants if kind == ProposalKind.PROMPT_VARIANT else 1,
        response_ids=responses,
    )


def proposal_inputs(job: GenerationJob) -> list[tuple[list[dict], dict]]:
    """What a proposal job samples from, in order: ``(messages, source)`` where ``source``
    is ``{"prompt_id", "response_id", "variant"}``."""
    prompts = Prompt.objects.in_bulk(job.prompt_ids)
    inputs = []
    if job.purpose == GenerationPurpose.PROMPT_VARIANT:
        for prompt_id in job.prompt_ids:
            if prompt_id not in prompts:
                continue
            for variant in range(job.variants):
                source = {"prompt_id": prompt_id, "response_id": None, "variant": variant}
                inputs.append((variant_instruction(prompts[prompt_id].messages), source))
        return inputs
    responses = Response.objects.in_bulk(job.response_ids)
    for response_id in job.response_ids:
        response = responses.get(response_id)
        if response is None or response.prompt_id not in prompts:
            continue
        source = {"prompt_id": response.prompt_id, "response_id": response_id, "variant": 0}
        messages = prompts[response.prompt_id].messages
        inputs.append((correction_instruction(messages, response.text), source))
    return inputs


def proposals_record(
    *, job: GenerationJob, version: ModelVersion, inputs: list, samples: list
) -> int:
    """Store a finished proposal job's samples as proposals; returns how many are new. A
    variant that repeats its source, or a correction that repeats the rejected answer, is
    nothing to confirm and is dropped."""
    prompts = Prompt.objects.in_bulk([source["prompt_id"] for _, source in inputs])
    responses = Response.objects.in_bulk(
        [s["response_id"] for _, s in inputs if s["response_id"] is not None]
    )

    def repeats(source: dict, text: str) -> bool:
        if source["response_id"] is not None:
            return _same_text(text, responses[source["response_id"]].text)
        return _same_text(text, _last_user_turn(prompts[source["prompt_id"]].messages))

    kept = [
        (source, sample)
        for (_, source), sample in zip(inputs, samples, strict=True)
        if not repeats(source, sample.text.strip())
    ]
    before = Proposal.objects.filter(project_id=job.project_id).count()
    proposals_store(
        project=job.project,
        kind=job.purpose,
        model_name=version.response_model_name,
        proposals=[
            {
                **source,
                "text": sample.text.strip(),
                "generation": {
                    **sample.params,
                    "model_version_id": version.pk,
                    "generation_job_id": job.pk,
                    "variant": source["variant"],
                    "finish_reason": sample.finish_reason,
                },
            }
            for source, sample in kept
        ],
    )
    return Proposal.objects.filter(project_id=job.project_id).count() - before
