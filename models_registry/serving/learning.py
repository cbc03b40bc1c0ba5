"""Served traffic as data, with the project's consent: scrubbed, then written through the
annotation layer's ``served_exchange_record``.

The scrubber is the snapshot pipeline's own (``rlhf.data.cleaning.TextCleaner``) with only
its PII step on: the same patterns and typed placeholders as a snapshot would apply later,
but applied before anything is stored, so no served personal data reaches the database."""

from __future__ import annotations

from annotation.services.served import served_exchange_record
from models_registry.serving.models import FeedbackKind, ServedFeedback
from rlhf.data.cleaning import CleaningConfig, TextCleaner

_PII_ONLY = CleaningConfig(
    normalize_unicode=False, strip_control=False, strip_html=False, scrub_pii=True,
    normalize_whitespace=False, min_chars=0,
)  # fmt: skip


def scrub_text(text: str) -> str:
    return TextCleaner(_PII_ONLY).clean(text)


def scrub_conversation(messages: list[dict], answer: str) -> tuple[list[dict], str]:
    scrubbed = [
        {"role": str(m.get("role", "")), "content": scrub_text(str(m.get("content", "")))}
        for m in messages
    ]
    return scrubbed, scrub_text(answer)


def _thumbs_partner(feedback: ServedFeedback) -> ServedFeedback | None:
    """The opposite thumbs, not yet learned, by the same key's owner on another answer to the
    same conversation: the two together are a preference."""
    return (
        ServedFeedback.objects.select_related("response__version")
        .filter(
            project=feedback.project, kind=FeedbackKind.THUMBS, learned_label__isnull=True,
            thumbs_up=not feedback.thumbs_up,
            response__prompt_hash=feedback.response.prompt_hash,
            response__user_id=feedback.response.user_id,
        )
        .exclude(response_id=feedback.response_id)
        .exclude(response__messages=[])
        .order_by("-id")
        .first()
    )  # fmt: skip


def served_feedback_learn(*, feedback: ServedFeedback):
    """The feedback's conversation (already scrubbed on its usage record) as project data;
    a preference as a label of the key's served source. None without a label.

    Thumbs: a lone one is kept as the conversation only (the data pipeline has no one-answer
    label); an up and a down on two answers to the same conversation (a regenerated answer,
    two versions side by side) are a preference, and both thumbs point at its label."""
    chosen = feedback.response
    if not chosen.messages:
        return None  # served before consent was given: nothing was kept
    answers = [(chosen.answer, chosen.version.response_model_name)]
    chosen_index = None
    partner = None
    if feedback.kind == FeedbackKind.PREFERENCE:
        rejected = feedback.rejected
        if not rejected.messages:
            return None
        answers.append((rejected.answer, rejected.version.response_model_name))
        chosen_index = 0
    elif (partner := _thumbs_partner(feedback)) is not None:
        other = partner.response
        if other.answer != chosen.answer:  # the same text twice compares nothing
            answers.append((other.answer, other.version.response_model_name))
            chosen_index = 0 if feedback.thumbs_up else 1
        else:
            partner = None
    label = served_exchange_record(
        project=feedback.project,
        recorded_by=feedback.token.user if feedback.token else None,
        key_name=feedback.token.name if feedback.token else "key",
        messages=chosen.messages,
        answers=answers,
        chosen_index=chosen_index,
    )
    if partner is not None and label is not None:
        ServedFeedback.objects.filter(pk=partner.pk).update(learned_label=label)
    return label
