"""Tokenisation: chat template, left truncation that keeps the last turns, nothing dropped."""

from transformers import AutoTokenizer

from rlhf.training.tokens import (
    chat_template_sha256,
    encode_decoder,
    encode_encoder,
    fit_prompt,
    render_ids,
)

LONG_HISTORY = [
    msg
    for turn in range(8)
    for msg in (
        {"role": "user", "content": f"old question {turn} " * 5},
        {"role": "assistant", "content": f"old answer {turn} " * 5},
    )
] + [{"role": "user", "content": "the latest question"}]


def test_short_conversations_are_encoded_whole(tiny_lm):
    tokenizer = AutoTokenizer.from_pretrained(tiny_lm)
    prompt = [{"role": "user", "content": "hi"}]
    encoded = encode_decoder(tokenizer, prompt, ["hello", "go away"], 512)
    full = render_ids(tokenizer, [*prompt, {"role": "assistant", "content": "hello"}])
    assert encoded.truncated is False
    assert encoded.prompt_ids + encoded.completion_ids[0] == full


def test_long_conversations_lose_their_oldest_turns_and_keep_the_latest(tiny_lm):
    tokenizer = AutoTokenizer.from_pretrained(tiny_lm)
    encoded = encode_decoder(tokenizer, LONG_HISTORY, ["the answer"], 120)
    prompt_text = tokenizer.decode(encoded.prompt_ids)
    assert encoded.truncated is True
    assert len(encoded.prompt_ids) + len(encoded.completion_ids[0]) <= 120
    assert "the latest question" in prompt_text
    assert "old question 0" not in prompt_text
    assert tokenizer.decode(encoded.completion_ids[0]).startswith("the answer")


def test_a_single_turn_longer_than_the_limit_is_cut_from_the_left(tiny_lm):
    tokenizer = AutoTokenizer.from_pretrained(tiny_lm)
    prompt = [{"role": "user", "content": "start " + "word " * 200 + "end of question"}]
    encoded = encode_decoder(tokenizer, prompt, ["short answer"], 64)
    assert len(encoded.prompt_ids) + len(encoded.completion_ids[0]) == 64
    assert tokenizer.decode(encoded.completion_ids[0]).startswith("short answer")
    assert "end of question" in tokenizer.decode(encoded.prompt_ids)


def test_encoder_pairs_put_the_answer_second_and_cut_the_conversation(tiny_encoder):
    tokenizer = AutoTokenizer.from_pretrained(tiny_encoder)
    # The tiny tokenizer has no [CLS]/[SEP]: its bos/eos take their places.
    (ids,), truncated = encode_encoder(tokenizer, LONG_HISTORY, ["the answer"], 100)
    assert truncated is True
    assert len(ids) == 100
    assert ids[0] == tokenizer.bos_token_id
    assert tokenizer.decode(ids).removesuffix("<|im_end|>").endswith("the answer")


def test_fit_prompt_drops_whole_turns_for_trainers_that_render_themselves(tiny_lm):
    tokenizer = AutoTokenizer.from_pretrained(tiny_lm)
    messages, truncated = fit_prompt(tokenizer, LONG_HISTORY, 100)
    assert truncated is True
    assert messages[-1] == LONG_HISTORY[-1]
    assert messages[0]["role"] == "user"
    assert len(render_ids(tokenizer, messages, add_generation_prompt=True)) <= 100


def test_chat_template_hash_is_the_sha256_of_the_template(tiny_lm):
    import hashlib

    tokenizer = AutoTokenizer.from_pretrained(tiny_lm)
    expected = hashlib.sha256(tokenizer.chat_template.encode()).hexdigest()
    assert chat_template_sha256(tokenizer) == expected
