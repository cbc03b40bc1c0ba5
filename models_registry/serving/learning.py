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


def served_feedback_learn(*, feedback: ServedFeedback):
    """The feedback's conversation (already scrubbed on its usage record) as project data;
    a preference as a label of the key's served source. None without a label."""
    chosen = feedback.response
    if not chosen.messages:
        return None  # served before consent was given: nothing was kept
    answers = [(chosen.answer, chosen.version.response_model_name)]
    chosen_index = None
    if feedback.kind == FeedbackKind.PREFERENCE:
        rejected = feedback.rejected
        if not rejected.messages:
            return None
        answers.append((rejected.answer, rejected.version.response_model_name))
        chosen_index = 0
    return served_exchange_record(
        project=feedback.project,
        recorded_by=feedback.token.user if feedback.token else None,
        key_name=feedback.token.name if feedback.token else "key",
        messages=chosen.messages,
        answers=answers,
        chosen_index=chosen_index,
    )
