"""Batched response generation for a policy folder (a full model, or a base model + LoRA adapter).

How a batch is made:

1. each prompt goes through the tokenizer's chat template (``add_generation_prompt=True``);
2. prompts are sorted by token length, longest first, so each batch holds similar lengths (little
   padding) and an out-of-memory error shows in the first batch rather than the last;
3. a batch is LEFT-padded, so every row's last prompt token sits in the last column and the new
   tokens of all rows line up; the attention mask hides the padding;
4. ``model.generate`` decodes with the KV cache; each row is cut at its first end-of-sequence
   token, and the finish reason says whether it stopped there (``"eos"``) or ran out of budget
   (``"length"``).

Sampling is reproducible per response, not per batch: every response has its own seed
(``config.seed + prompt_index``) and its own random generator, so the same prompt with the same
seed gives the same text whether it was generated alone or among 63 others. Greedy decoding
(``temperature == 0``) needs no seed.

Safety: weights load only from safetensors, ``trust_remote_code`` is off and nothing is fetched
from a hub. No Django here; the caller stores the returned dataclasses.

An optional vLLM path is used when ``config.backend`` allows it, ``vllm`` is importable and a
CUDA device is present; it is never required.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # torch loads on first use: the web process imports GenerationConfig only
    from rlhf.training.loading import LoadedModel

Message = dict[str, str]
Prompt = str | Sequence[Message]
ProgressCallback = Callable[[int, int], None]
"""Called as ``on_progress(done, total)`` after each batch (counts are prompts)."""

FinishReason = Literal["eos", "length"]


@dataclass(frozen=True)
class GenerationConfig:
    """How responses are sampled. Stored with every response (see ``GeneratedResponse.params``)."""

    max_new_tokens: int = 256
    """Budget of new tokens per response; a response that uses it all finishes with "length"."""
    temperature: float = 0.7
    """Softmax temperature. 0 means greedy decoding (argmax), deterministic without a seed."""
    top_p: float = 0.95
    """Nucleus sampling: keep the smallest set of tokens whose probability reaches top_p."""
    seed: int = 0
    """Response i of a call is sampled with seed + i (see the module docstring)."""
    batch_size: int = 16
    """Prompts per forward pass. Larger is faster until memory or padding waste bites."""
    system_prompt: str | None = None
    """Prepended as a system message to prompts given as plain strings."""
    backend: Literal["auto", "transformers", "vllm"] = "auto"
    """auto: vLLM when importable with a CUDA device and a full (non-adapter) model, else
    transformers. "vllm" fails loudly if vLLM cannot be used."""

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0 (0 is greedy)")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass(frozen=True)
class GeneratedResponse:
    prompt_index: int
    """Position of the prompt in the caller's list (results come back in that order)."""
    text: str
    """The new text only, special tokens removed."""
    prompt_tokens: int
    """Tokens of the templated prompt (padding not counted)."""
    new_tokens: int
    """Tokens generated, up to and including the end-of-sequence token when there is one."""
    finish_reason: FinishReason
    token_ids: list[int] = field(repr=False)
    """The generated ids counted by new_tokens (for KL/log-prob evaluation on the same tokens)."""
    params: dict[str, Any] = field(default_factory=dict)
    """temperature, top_p, max_new_tokens, seed (this response's), backend, dtype."""


@dataclass(frozen=True)
class GenerationResult:
    responses: list[GeneratedResponse]
    backend: str
    elapsed_s: float

    @property
    def new_tokens(self) -> int:
        return sum(r.new_tokens for r in self.responses)

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.elapsed_s if self.elapsed_s > 0 else 0.0


# ---------------------------------------------------------------------------------------------
# Loading


def load_causal_lm(
    model_dir: Path,
    *,
    base_model_dir: Path | None = None,
    device: str = "auto",
    dtype: str = "auto",
) -> LoadedModel:
    """A policy folder ready to generate (``loading.load_for_inference``). A folder with
    ``adapter_config.json`` is a PEFT adapter, merged into its base (``base_model_dir`` or the
    folder its config names), since merged weights generate faster. ``dtype``: a precision
    ("auto", "bf16", ...) or a torch dtype name ("float32", ...)."""
    from rlhf.training.loading import load_for_inference

    return load_for_inference(
        model_dir, kind="causal_lm", device=device, precision=dtype, base=base_model_dir
    )


# ---------------------------------------------------------------------------------------------
# Prompts


def as_messages(prompt: Prompt, system_prompt: str | None = None) -> list[Message]:
    if isinstance(prompt, str):
        messages = [{"role": "user", "content": prompt}]
        if system_prompt:
            messages.insert(0, {"role": "system", "content": system_prompt})
        return messages
    return [dict(m) for m in prompt]


# An encoder-decoder's input is cut to this many tokens (oldest text first): T5's pretraining
# length, and Tandem's default max_length for SFT.
SEQ2SEQ_SOURCE_TOKENS = 512


def is_encoder_decoder(model) -> bool:
    return bool(getattr(model.config, "is_encoder_decoder", False))


def encode_prompts(
    tokenizer,
    prompts: Sequence[Prompt],
    system_prompt: str | None = None,
    *,
    seq2seq: bool = False,
):
    """Token ids of each prompt with the chat template applied, ready for the assistant turn.

    ``seq2seq``: the encoder's input instead, in the rendering SFT trained it on
    (``tokens.seq2seq_source_ids``)."""
    if seq2seq:
        from rlhf.training.tokens import seq2seq_source_ids

        return [
            seq2seq_source_ids(tokenizer, as_messages(p, system_prompt), SEQ2SEQ_SOURCE_TOKENS)[0]
            for p in prompts
        ]
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("the tokenizer has no chat template; a chat model is required")
    if not prompts:
        return []
    texts = [
        tokenizer.apply_chat_template(
            as_messages(prompt, system_prompt), add_generation_prompt=True, tokenize=False
        )
        for prompt in prompts
    ]
    # One batched call (the fast tokenizer splits the work); the template already wrote the
    # special tokens, and adding BOS again would shift the model.
    return [list(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def eos_token_ids(loaded: LoadedModel) -> list[int]:
    ids: set[int] = set()
    if loaded.tokenizer.eos_token_id is not None:
        ids.add(int(loaded.tokenizer.eos_token_id))
    configured = getattr(loaded.model.generation_config, "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(int(i) for i in configured)
    if not ids:
        raise ValueError("the model declares no end-of-sequence token")
    return sorted(ids)


def trim_at_eos(new_ids: Sequence[int], eos_ids: Sequence[int]) -> tuple[list[int], FinishReason]:
    eos = set(eos_ids)
    for position, token in enumerate(new_ids):
        if token in eos:
            return list(new_ids[: position + 1]), "eos"
    return list(new_ids), "length"


# ---------------------------------------------------------------------------------------------
# Sampling with one random generator per row


class _PerRowSampler:
    """A logits processor that samples each row with that row's own torch.Generator.

    ``generate`` runs greedily; this processor applies temperature and top-p, draws the token by
    inverse-CDF sampling from the row's generator, and leaves only that token finite, so the
    greedy argmax picks it. One uniform draw per row per step means a row's tokens depend on its
    own logits and seed only, never on its batch mates.
    """

    def __init__(self, generators, temperature: float, top_p: float):
        self.generators = generators
        self.temperature = temperature
        self.top_p = top_p

    def __call__(self, input_ids, scores):
        import torch

        # scores: (batch, vocab)
        logits = scores.float() / self.temperature
        sorted_logits, sorted_ids = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)  # (batch, vocab), descending
        mass_before = torch.cumsum(probs, dim=-1) - probs
        # Keep a token while the mass before it is below top_p: the first token always stays.
        probs = probs.masked_fill(mass_before >= self.top_p, 0.0)
        cdf = torch.cumsum(probs, dim=-1)  # (batch, vocab)
        uniforms = torch.stack(
            [torch.rand((), generator=g, device=g.device) for g in self.generators]
        ).to(cdf.device)  # (batch,)
        targets = (uniforms * cdf[:, -1]).unsqueeze(-1)  # (batch, 1)
        position = (cdf <= targets).sum(dim=-1, keepdim=True)  # (batch, 1)
        kept = (probs > 0).sum(dim=-1, keepdim=True)
        position = torch.minimum(position, kept - 1)
        chosen = sorted_ids.gather(-1, position)  # (batch, 1)
        forced = torch.full_like(scores, float("-inf"))
        return forced.scatter(-1, chosen, 0.0)


def response_seed(config: GenerationConfig, prompt_index: int) -> int | None:
    return None if config.greedy else config.seed + prompt_index


# ---------------------------------------------------------------------------------------------
# Generation


def _transformers_generation_config(config: GenerationConfig, eos_ids: list[int], pad_id: int):
    from transformers import GenerationConfig as HFGenerationConfig

    # A fresh config, so that sampling defaults shipped in a model folder never apply silently.
    return HFGenerationConfig(
        max_new_tokens=config.max_new_tokens,
        do_sample=False,
        num_beams=1,
        eos_token_id=eos_ids,
        pad_token_id=pad_id,
        use_cache=True,
    )


def generate_responses(
    loaded: LoadedModel,
    prompts: Sequence[Prompt],
    config: GenerationConfig,
    *,
    on_progress: ProgressCallback | None = None,
) -> GenerationResult:
    """Generate one response per prompt with ``transformers``; results in the prompts' order."""
    import torch
    from transformers import LogitsProcessorList

    from rlhf.training.rollout import batches_by_length, pad_left

    started = time.perf_counter()
    tokenizer, model = loaded.tokenizer, loaded.model
    seq2seq = is_encoder_decoder(model)
    encoded = encode_prompts(tokenizer, prompts, config.system_prompt, seq2seq=seq2seq)
    eos_ids = eos_token_ids(loaded)
    pad_id = tokenizer.pad_token_id
    hf_config = _transformers_generation_config(config, eos_ids, pad_id)
    dtype_name = str(next(model.parameters()).dtype).removeprefix("torch.")
    results: dict[int, GeneratedResponse] = {}
    done = 0
    for batch in batches_by_length([len(ids) for ids in encoded], config.batch_size):
        input_ids, attention_mask = pad_left([encoded[i] for i in batch], pad_id, loaded.device)
        processors = LogitsProcessorList()
        if not config.greedy:
            generators = []
            for index in batch:
                generator = torch.Generator(device=loaded.device)
                generator.manual_seed(response_seed(config, index))
                generators.append(generator)
            processors.append(_PerRowSampler(generators, config.temperature, config.top_p))
        with torch.inference_mode():
            output = model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                generation_config=hf_config,
                logits_processor=processors,
            )  # decoder: (batch, prompt_width + new_len); seq2seq: (batch, 1 + new_len)
        # An encoder-decoder's output starts with its decoder-start token, not the prompt.
        new_ids = output[:, 1 if seq2seq else input_ids.shape[1] :].tolist()
        for row, index in enumerate(batch):
            token_ids, finish_reason = trim_at_eos(new_ids[row], eos_ids)
            results[index] = GeneratedResponse(
                prompt_index=index,
                text=tokenizer.decode(token_ids, skip_special_tokens=True),
                prompt_tokens=len(encoded[index]),
                new_tokens=len(token_ids),
                finish_reason=finish_reason,
                token_ids=token_ids,
                params=_params(config, index, backend="transformers", dtype=dtype_name),
            )
        done += len(batch)
        if on_progress is not None:
            on_progress(done, len(prompts))
    return GenerationResult(
        responses=[results[i] for i in range(len(prompts))],
        backend="transformers",
        elapsed_s=time.perf_counter() - started,
    )


def _params(config: GenerationConfig, index: int, *, backend: str, dtype: str) -> dict[str, Any]:
    return {
        "temperature": config.temperature,
        "top_p": config.top_p,
        "max_new_tokens": config.max_new_tokens,
        "seed": response_seed(config, index),
        "batch_size": config.batch_size,
        "system_prompt": config.system_prompt,
        "backend": backend,
        "dtype": dtype,
    }


def vllm_usable() -> bool:
    if importlib.util.find_spec("vllm") is None:
        return False
    import torch

    return torch.cuda.is_available()


def generate_with_vllm(
    model_dir: Path,
    prompts: Sequence[Prompt],
    config: GenerationConfig,
    *,
    on_progress: ProgressCallback | None = None,
) -> GenerationResult:
    """The fast path: vLLM schedules all prompts itself (continuous batching on the GPU)."""
    from vllm import LLM, SamplingParams

    from rlhf.training.loading import check_model_folder, load_tokenizer

    started = time.perf_counter()
    model_dir = check_model_folder(model_dir)
    tokenizer = load_tokenizer(model_dir)
    encoded = encode_prompts(tokenizer, prompts, config.system_prompt)
    llm = LLM(model=str(model_dir), trust_remote_code=False, load_format="safetensors")
    sampling = [
        SamplingParams(
            temperature=config.temperature,
            top_p=config.top_p,
            max_tokens=config.max_new_tokens,
            seed=response_seed(config, index),
        )
        for index in range(len(prompts))
    ]
    outputs = llm.generate([{"prompt_token_ids": ids} for ids in encoded], sampling)
    eos_ids = {tokenizer.eos_token_id}
    responses = []
    for index, output in enumerate(outputs):
        completion = output.outputs[0]
        token_ids = list(completion.token_ids)
        # vLLM says "stop" for an end-of-sequence token; "length" matches ours.
        finish_reason: FinishReason = "length" if completion.finish_reason == "length" else "eos"
        if finish_reason == "eos" and token_ids and token_ids[-1] not in eos_ids:
            token_ids.append(tokenizer.eos_token_id)  # vLLM leaves the stop token out
        responses.append(
            GeneratedResponse(
                prompt_index=index,
                text=completion.text,
                prompt_tokens=len(encoded[index]),
                new_tokens=len(token_ids),
                finish_reason=finish_reason,
                token_ids=token_ids,
                params=_params(config, index, backend="vllm", dtype="auto"),
            )
        )
    if on_progress is not None:
        on_progress(len(prompts), len(prompts))
    return GenerationResult(
        responses=responses, backend="vllm", elapsed_s=time.perf_counter() - started
    )


def generate_from_folder(
    model_dir: Path,
    prompts: Sequence[Prompt],
    config: GenerationConfig,
    *,
    base_model_dir: Path | None = None,
    device: str = "auto",
    dtype: str = "auto",
    on_progress: ProgressCallback | None = None,
) -> GenerationResult:
    """Load a policy folder and generate; picks vLLM or transformers per ``config.backend``."""
    model_dir = Path(model_dir)
    is_adapter = (model_dir / "adapter_config.json").is_file()
    from rlhf.training.config import is_seq2seq

    seq2seq = is_seq2seq(str(model_dir))  # vLLM serves decoders: T5 generates here
    if config.backend == "vllm" or (
        config.backend == "auto"
        and not is_adapter
        and not seq2seq
        and device in ("auto", "cuda")
        and vllm_usable()
    ):
        if is_adapter:
            raise ValueError("the vLLM path takes full models; merge the adapter first")
        return generate_with_vllm(model_dir, prompts, config, on_progress=on_progress)
    loaded = load_causal_lm(model_dir, base_model_dir=base_model_dir, device=device, dtype=dtype)
    return generate_responses(loaded, prompts, config, on_progress=on_progress)


def config_record(config: GenerationConfig) -> dict[str, Any]:
    """The config as a JSON-ready dict (what a generation job stores)."""
    return asdict(config)
