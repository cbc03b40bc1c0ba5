"""Tokenisation with the base model's chat template, truncating from the left, never dropping.

TRL's trainers drop or right-truncate rows longer than ``max_length`` (28% of HH-RLHF pairs at
256 tokens with SmolLM2's tokenizer). Here a long conversation first loses its oldest turns,
whole, so the latest turns and the answers stay; only when the last user turn plus the answer
still does not fit are prompt tokens cut from the left (and, last resort, the answer's tail).
Every truncated row is counted and reported.

Encoders (BERT-type) have no chat template: the conversation is rendered as ``role: content``
lines and the answer is the second segment, ``[CLS] conversation [SEP] answer [SEP]``, so that
the answer is never the part that is cut. ``ENCODER_TEMPLATE`` names that rendering; its hash is
recorded like a chat template's.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

ENCODER_TEMPLATE = "tandem-encoder-pair/1: [CLS] {role}: {content}\\n... [SEP] {answer} [SEP]"
# Encoder-decoder (T5-family) models: the conversation, as role lines ending with the
# assistant's cue, is the encoder's input; the answer is the decoder's target. Both end with EOS.
SEQ2SEQ_TEMPLATE = (
    "tandem-seq2seq/1: source {role}: {content}\\n...assistant: </s> target {answer} </s>"
)
SEQ2SEQ_CUE = "assistant:"


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def chat_template_sha256(tokenizer) -> str:
    template = tokenizer.chat_template if has_chat_template(tokenizer) else ENCODER_TEMPLATE
    if isinstance(template, dict):  # several named templates: hash them all, in a stable order
        template = "\n".join(f"{k}\n{template[k]}" for k in sorted(template))
    return hashlib.sha256(template.encode("utf-8")).hexdigest()


def render_ids(
    tokenizer, messages: list[dict], *, add_generation_prompt: bool = False
) -> list[int]:
    encoded = tokenizer.apply_chat_template(
        messages, tokenize=True, add_generation_prompt=add_generation_prompt
    )
    ids = encoded["input_ids"] if hasattr(encoded, "keys") else encoded
    return list(ids)


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _drop_oldest_turn(messages: list[dict]) -> list[dict] | None:
    """Remove the oldest exchange (keeping a leading system message); None when nothing is left."""
    head = messages[:1] if messages and messages[0]["role"] == "system" else []
    body = messages[len(head) :]
    # Drop up to and including the first turn, then up to the next user turn, so the
    # conversation still starts with the user.
    rest = body[1:]
    while rest and rest[0]["role"] != "user":
        rest = rest[1:]
    if not rest:
        return None
    return head + rest


@dataclass
class Encoded:
    """A prompt and its answers as token ids; ``truncated`` says whether anything was cut."""

    prompt_ids: list[int]
    completion_ids: list[list[int]]
    truncated: bool


def encode_decoder(tokenizer, prompt: list[dict], answers: list[str], max_length: int) -> Encoded:
    """Chat-template ids of ``prompt`` and each answer so that prompt + longest answer fits."""
    messages = list(prompt)
    truncated = False
    while True:
        prompt_ids = render_ids(tokenizer, messages, add_generation_prompt=True)
        fulls = [
            render_ids(tokenizer, [*messages, {"role": "assistant", "content": answer}])
            for answer in answers
        ]
        # Templates normally render the prompt as a prefix of prompt + answer. When one does
        # not, the answer starts where they diverge, so prompt + answer is the real sequence.
        prompt_len = min([len(prompt_ids)] + [_common_prefix(prompt_ids, f) for f in fulls])
        prompt_ids = prompt_ids[:prompt_len]
        completions = [f[prompt_len:] for f in fulls]
        longest = max((len(c) for c in completions), default=0)
        if len(prompt_ids) + longest <= max_length:
            return Encoded(prompt_ids, completions, truncated)
        shorter = _drop_oldest_turn(messages)
        if shorter is None:
            break
        messages, truncated = shorter, True
    # One user turn and the answer still do not fit: keep the answer (up to half the budget
    # if the prompt needs the rest) and the prompt's last tokens.
    return Encoded(*_cut_tokens(prompt_ids, completions, max_length), True)


def _cut_tokens(
    prompt_ids: list[int], completions: list[list[int]], budget: int
) -> tuple[list[int], list[list[int]]]:
    longest = max((len(c) for c in completions), default=0)
    answer_budget = min(longest, max(budget - len(prompt_ids), budget // 2))
    completions = [c[:answer_budget] for c in completions]
    prompt_budget = budget - max((len(c) for c in completions), default=0)
    return prompt_ids[len(prompt_ids) - prompt_budget :] if prompt_budget > 0 else [], completions


def render_plain(messages: list[dict]) -> str:
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages)


def encode_encoder(
    tokenizer, prompt: list[dict], answers: list[str], max_length: int
) -> tuple[list[list[int]], bool]:
    """``[CLS] conversation [SEP] answer [SEP]`` per answer, cutting the conversation's start."""
    budget = max_length - 3  # [CLS] and two [SEP]
    prompt_ids = tokenizer(render_plain(prompt), add_special_tokens=False)["input_ids"]
    answer_ids = [tokenizer(a, add_special_tokens=False)["input_ids"] for a in answers]
    truncated = len(prompt_ids) + max(len(a) for a in answer_ids) > budget
    if truncated:
        prompt_ids, answer_ids = _cut_tokens(prompt_ids, answer_ids, budget)
    first = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    sep = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    return [[first, *prompt_ids, sep, *a, sep] for a in answer_ids], truncated


def encode_for_scoring(
    tokenizer, prompt: list[dict], answers: list[str], max_length: int
) -> tuple[list[list[int]], bool]:
    """Whole sequences a reward model scores, one per answer, with the model family's layout."""
    if has_chat_template(tokenizer):
        encoded = encode_decoder(tokenizer, prompt, answers, max_length)
        return [encoded.prompt_ids + c for c in encoded.completion_ids], encoded.truncated
    return encode_encoder(tokenizer, prompt, answers, max_length)


def fit_prompt(tokenizer, prompt: list[dict], max_length: int) -> tuple[list[dict], bool]:
    """The prompt's messages, oldest turns dropped until it renders within ``max_length``.

    For trainers that apply the chat template themselves (TRL's online trainers): when one user
    turn alone is too long, the start of its text is cut.
    """
    messages, truncated = list(prompt), False
    while len(render_ids(tokenizer, messages, add_generation_prompt=True)) > max_length:
        shorter = _drop_oldest_turn(messages)
        if shorter is None:
            overflow = len(render_ids(tokenizer, messages, add_generation_prompt=True)) - max_length
            ids = tokenizer(messages[-1]["content"], add_special_tokens=False)["input_ids"]
            kept = tokenizer.decode(ids[overflow + 1 :])
            return [*messages[:-1], {"role": messages[-1]["role"], "content": kept}], True
        messages, truncated = shorter, True
    return messages, truncated


def seq2seq_template_sha256() -> str:
    """What a seq2seq run records instead of a chat template's hash."""
    return hashlib.sha256(SEQ2SEQ_TEMPLATE.encode("utf-8")).hexdigest()


def _with_eos(ids: list[int], tokenizer) -> list[int]:
    eos = tokenizer.eos_token_id
    return ids if eos is None or (ids and ids[-1] == eos) else [*ids, eos]


def seq2seq_source_ids(tokenizer, prompt: list[dict], max_length: int) -> tuple[list[int], bool]:
    """The encoder's input for a conversation: role lines and the assistant's cue, cut from the
    left (oldest text first) to ``max_length`` tokens with EOS."""
    text = render_plain(prompt) + "\n" + SEQ2SEQ_CUE
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    budget = max_length - 1
    truncated = len(ids) > budget
    return _with_eos(ids[len(ids) - budget :] if truncated else ids, tokenizer), truncated


def encode_seq2seq(
    tokenizer, prompt: list[dict], answer: str, max_length: int
) -> tuple[list[int], list[int], bool]:
    """(source ids, target ids, truncated): each at most ``max_length`` tokens with EOS; the
    source loses its oldest text, the target (rarely) its tail."""
    source, truncated = seq2seq_source_ids(tokenizer, prompt, max_length)
    target = tokenizer(answer, add_special_tokens=False)["input_ids"]
    if len(target) > max_length - 1:
        target, truncated = target[: max_length - 1], True
    return source, _with_eos(target, tokenizer), truncated
