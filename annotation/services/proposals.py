"""Model-proposed data that people confirm: prompt variants and corrections of rejected answers.

A proposal is stored with a ``confirm`` task beside it (``proposals_store``); it is no
training data until a person decides it (``proposal_decide``, inside ``label_submit``'s
transaction):

- ``confirm`` / ``edit`` of a prompt variant: a new ``Prompt`` (the source prompt's messages
  with its last user turn replaced by the variant), ``source_prompt`` = the lineage's root;
- ``confirm`` / ``edit`` of a correction: a new ``Response`` to the source prompt (origin
  ``model`` when confirmed as proposed, ``human`` once a person rewrote it); the label itself
  carries the correction keys, so snapshots read it as a correction (corrected > original);
- ``reject``: nothing enters the pool; the proposal keeps its text for the record.

Lineage lives on the proposal: source prompt or response, the proposing version
(``generation.model_version_id``) and the confirming person (``decided_by``).
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from annotation.models import (
    Label,
    Project,
    Prompt,
    Proposal,
    ProposalKind,
    ProposalStatus,
    Response,
    ResponseOrigin,
    Task,
    TaskItem,
    TaskKind,
)
from annotation.selectors import proposal_of_task
from annotation.services.hashing import content_hash, prompt_messages_hash, text_hash
from config.errors import ValidationFailed

MAX_PROPOSAL_CHARS = 100_000


def variant_messages(messages: list[dict], text: str) -> list[dict]:
    """The source conversation with its last user turn replaced by ``text`` (a variant
    rewords what is asked; earlier turns stay as they were)."""
    out = [dict(m) for m in messages]
    for message in reversed(out):
        if message.get("role") == "user":
            message["content"] = text
            return out
    return [*out, {"role": "user", "content": text}]


def lineage_root(prompt: Prompt) -> Prompt:
    """The prompt a variant of ``prompt`` descends from (itself unless it is a variant)."""
    return prompt.source_prompt if prompt.source_prompt_id else prompt


@transaction.atomic
def proposals_store(
    *,
    project: Project,
    kind: str,
    model_name: str,
    proposals: list[dict],
) -> list[Proposal]:
    """Store proposals and a ``confirm`` task for each one new; returns every proposal
    (found or created). ``proposals`` items: ``{"prompt_id", "response_id" (corrections),
    "text", "generation"}``. Idempotent: the same proposal found again is not stored twice."""
    if kind not in ProposalKind.values:
        raise ValidationFailed(f"kind must be one of {ProposalKind.values}", field="kind")
    stored = []
    for item in proposals:
        text = item["text"].replace("\x00", "\ufffd")[:MAX_PROPOSAL_CHARS]
        if not text.strip():
            continue  # an empty sample is nothing a person could confirm
        response_id = item.get("response_id") if kind == ProposalKind.CORRECTION else None
        proposal, created = Proposal.objects.get_or_create(
            project=project,
            kind=kind,
            source_prompt_id=item["prompt_id"],
            source_response_id=response_id,
            content_hash=text_hash(text),
            defaults={"text": text, "model_name": model_name, "generation": item["generation"]},
        )
        if created:
            task = Task.objects.create(
                project=project,
                prompt_id=item["prompt_id"],
                kind=TaskKind.CONFIRM,
                required_labels=1,  # one person's decision settles a proposal
                content_hash=content_hash({"confirm": proposal.pk}),
                source=f"proposal:{kind}",
            )
            if response_id is not None:
                TaskItem.objects.create(task=task, response_id=response_id, position=0)
            proposal.task = task
            proposal.save(update_fields=["task"])
        stored.append(proposal)
    return stored


def proposal_context(task: Task) -> dict:
    """What ``annotation.labels.canonical_confirm`` needs to know of a task's proposal."""
    proposal = proposal_of_task(task)
    return {
        "id": proposal.pk,
        "kind": proposal.kind,
        "text": proposal.text,
        "response_id": proposal.source_response_id,
    }


def proposal_decide(*, label: Label) -> Proposal:
    """Apply a person's ``confirm`` label to its proposal (in the submit's transaction): a
    kept proposal enters the pool with its lineage; a rejected one enters nothing."""
    payload = label.payload
    proposal = Proposal.objects.select_for_update().get(pk=payload["proposal_id"])
    decision = payload["decision"]
    proposal.status = {
        "confirm": ProposalStatus.CONFIRMED,
        "edit": ProposalStatus.EDITED,
        "reject": ProposalStatus.REJECTED,
    }[decision]
    proposal.decided_by_id = label.annotator_id
    proposal.decided_at = timezone.now()
    fields = ["status", "decided_by", "decided_at", "final_text"]
    final = payload["final_text"]
    proposal.final_text = final or ""
    lineage = {
        "proposal_id": proposal.pk,
        "model_version_id": proposal.generation.get("model_version_id"),
        "confirmed_by": label.annotator_id,
        "decision": decision,
    }
    if final is not None and proposal.kind == ProposalKind.PROMPT_VARIANT:
        source = Prompt.objects.select_related("source_prompt").get(pk=proposal.source_prompt_id)
        root = lineage_root(source)
        messages = variant_messages(source.messages, final)
        proposal.result_prompt, _ = Prompt.objects.get_or_create(
            project_id=proposal.project_id,
            content_hash=prompt_messages_hash(messages),
            defaults={
                "messages": messages,
                "source": "variant",
                "source_prompt": root,
                "metadata": {"lineage": lineage},
            },
        )
        fields.append("result_prompt")
    elif final is not None:
        origin = ResponseOrigin.MODEL if decision == "confirm" else ResponseOrigin.HUMAN
        proposal.result_response, _ = Response.objects.get_or_create(
            prompt_id=proposal.source_prompt_id,
            origin=origin,
            model_name=proposal.model_name if origin == ResponseOrigin.MODEL else "",
            content_hash=text_hash(final),
            defaults={
                "text": final,
                "generation": {
                    **proposal.generation,
                    **lineage,
                    "corrects_response_id": proposal.source_response_id,
                },
                "created_by_id": label.annotator_id,
            },
        )
        fields.append("result_response")
    proposal.save(update_fields=fields)
    return proposal
