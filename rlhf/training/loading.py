"""Loading models and tokenizers safely: local folders, safetensors only, no remote code.

A model folder is either full weights (``*.safetensors`` + ``config.json``) or a LoRA adapter
(``adapter_config.json`` + ``adapter_model.safetensors``) over a local base folder; an adapter is
merged into its base on load, so the returned model *is* the parent version.

Training and inference share one device rule (``resolve_device``) and one precision rule
(``resolve_precision``): "auto" means bf16 where the hardware computes it natively, on a GPU or
a CPU, for a training run, ``evaluate-reward``, generation and a review round alike.
``load_for_inference`` is the one loader of a model that only answers or scores.
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from rlhf.training.architecture import backbone_conflict
from rlhf.training.base_models import minilm_path
from rlhf.training.config import is_seq2seq


class ModelFolderError(ValueError):
    """A model folder cannot be used: missing, not safetensors, or pointing elsewhere."""


@contextlib.contextmanager
def quiet_transformers():
    """Silence load reports and progress bars: the engine reports through callbacks only."""
    import datasets
    from transformers.utils import logging as hf_logging

    previous = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    dataset_bars = datasets.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        hf_logging.set_verbosity(previous)
        if bars:
            hf_logging.enable_progress_bar()
        if dataset_bars:
            datasets.enable_progress_bars()


def is_adapter_folder(path: Path) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def check_model_folder(path: str | Path) -> Path:
    """A local folder whose weights are safetensors (pickle-based weights are refused)."""
    folder = Path(path)
    if not folder.is_dir():
        raise ModelFolderError(f"model folder {folder} does not exist")
    if not any(folder.glob("*.safetensors")):
        raise ModelFolderError(f"{folder} holds no .safetensors weights (only safetensors load)")
    return folder


def adapter_base(path: Path) -> Path:
    config = json.loads((Path(path) / "adapter_config.json").read_text())
    base = Path(config.get("base_model_name_or_path") or "")
    if not base.is_dir():
        raise ModelFolderError(
            f"adapter {path} names base {str(base)!r}, which is not a local folder"
        )
    return check_model_folder(base)


def load_tokenizer(path: str | Path, *, base: str | Path | None = None):
    from transformers import AutoTokenizer

    folder = check_model_folder(path)
    source = folder
    if is_adapter_folder(folder):
        source = check_model_folder(base) if base else adapter_base(folder)
    # An adapter folder may carry the tokenizer it was trained with; prefer it.
    if (folder / "tokenizer_config.json").is_file():
        source = folder
    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


def load_causal_lm(path: str | Path, *, dtype=torch.float32, base: str | Path | None = None):
    """A generative LM from full weights, or a base with its LoRA adapter merged in.

    A decoder (``AutoModelForCausalLM``), or an encoder-decoder (``AutoModelForSeq2SeqLM``, a
    T5-family model) when the folder's config says ``is_encoder_decoder``: only SFT trains
    those (``TrainingConfig.validate``), generation and evaluation answer with both.
    ``base``: the adapter's base folder when it is not the one its adapter_config.json names.
    """
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    folder = check_model_folder(path)
    with quiet_transformers():
        if is_adapter_folder(folder):
            from peft import PeftModel

            if not (folder / "adapter_model.safetensors").is_file():
                raise ModelFolderError(f"{folder} holds no adapter_model.safetensors")
            base_folder = check_model_folder(base) if base else adapter_base(folder)
            auto = AutoModelForSeq2SeqLM if is_seq2seq(str(base_folder)) else AutoModelForCausalLM
            base_model = auto.from_pretrained(
                base_folder, dtype=dtype, use_safetensors=True, trust_remote_code=False
            )
            model = PeftModel.from_pretrained(base_model, folder).merge_and_unload()
        else:
            auto = AutoModelForSeq2SeqLM if is_seq2seq(str(folder)) else AutoModelForCausalLM
            model = auto.from_pretrained(
                folder, dtype=dtype, use_safetensors=True, trust_remote_code=False
            )
    return model


def reward_model_source(backbone: str, base_model: str) -> Path:
    if backbone == "encoder" and not base_model:
        return minilm_path()
    if not base_model:
        raise ModelFolderError("base_model is required")
    conflict = backbone_conflict(backbone, base_model)
    if conflict:
        raise ModelFolderError(f"{conflict[0]} {conflict[1]}")
    return check_model_folder(base_model)


HEAD_NAMES = ("score", "classifier")  # scalar heads: decoder families, BERT-type encoders


def load_sequence_classifier(path: str | Path, *, pad_token_id: int | None = None):
    """A one-output sequence classifier (reward or value model) from any local backbone.

    A causal LM or bare encoder checkpoint gets a new, seeded scalar head; a reward model
    folder loads with its trained head. ``model.tandem_new_head`` says which.
    """
    from transformers import AutoModelForSequenceClassification

    folder = check_model_folder(path)
    logging.getLogger("transformers.modeling_utils").setLevel(logging.ERROR)
    with quiet_transformers():
        if is_adapter_folder(folder):
            from peft import PeftModel

            base = AutoModelForSequenceClassification.from_pretrained(
                adapter_base(folder), num_labels=1, use_safetensors=True, trust_remote_code=False
            )
            model = PeftModel.from_pretrained(base, folder).merge_and_unload()
            new_head = False  # the adapter saves its trained head (modules_to_save)
        else:
            model, info = AutoModelForSequenceClassification.from_pretrained(
                folder,
                num_labels=1,
                use_safetensors=True,
                trust_remote_code=False,
                dtype=torch.float32,
                output_loading_info=True,
            )
            # Missing, or of another shape (a classifier with several labels): freshly initialised.
            fresh = [*info["missing_keys"], *(key for key, *_shapes in info["mismatched_keys"])]
            new_head = any(key.split(".", 1)[0] in HEAD_NAMES for key in fresh)
    if pad_token_id is not None:
        model.config.pad_token_id = pad_token_id
    model.tandem_new_head = new_head  # True: the head is random, see head_probe
    return model


def lora_config(config, *, task_type: str, modules_to_save: list[str] | None = None):
    from peft import LoraConfig

    targets = config.lora_target_modules
    default = type(config)().lora_target_modules
    if task_type == "SEQ_2_SEQ_LM" and targets == default:
        # The default names Llama's projections, which a T5-family model does not have.
        targets = ["all-linear"]
    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules="all-linear" if targets == ["all-linear"] else list(targets),
        task_type=task_type,
        modules_to_save=modules_to_save,
    )


def resolve_device(requested: str) -> str:
    """'cuda' or 'cpu' ('auto': CUDA when visible); a CUDA request without a GPU is refused."""
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise ModelFolderError("device 'cuda' was asked for but no CUDA device is visible")
    return requested


def bf16_supported(device: str) -> bool:
    if device == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


# Inference callers name precisions as torch dtypes ("float32"); the engine's configs do not.
PRECISION_ALIASES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}
TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(requested: str, device: str) -> str:
    """'bf16', 'fp16' or 'fp32'; 'auto' picks bf16 where the hardware computes it natively.

    The one rule for "auto", in training and in every kind of evaluation.
    """
    requested = PRECISION_ALIASES.get(requested, requested)
    if requested not in ("auto", *TORCH_DTYPES):
        raise ModelFolderError(f"unknown precision {requested!r}")
    if requested == "auto":
        return "bf16" if bf16_supported(device) else "fp32"
    if requested == "fp16" and device == "cpu":
        raise ModelFolderError("fp16 autocast needs a GPU; use bf16 or fp32 on a CPU")
    return requested


def autocast(device: str, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device, dtype=dtype)


@dataclass
class LoadedModel:
    """A model ready to answer or score, with the tokenizer and settings that belong to it."""

    model: Any  # transformers PreTrainedModel, in eval mode, on `device`, no gradients
    tokenizer: Any
    device: str  # "cpu" or "cuda"
    precision: str  # "fp32", "bf16" or "fp16", as resolve_precision decided
    model_dir: Path
    is_adapter: bool


def load_for_inference(
    path: str | Path,
    *,
    kind: Literal["causal_lm", "reward_model"],
    device: str = "auto",
    precision: str = "auto",
    base: str | Path | None = None,
) -> LoadedModel:
    """The one loader of a model that only generates or scores (never trains).

    A causal LM's weights are stored in the resolved precision (generation is bandwidth-bound,
    so bf16 weights halve the bytes read per token). A reward model keeps fp32 weights and
    computes under autocast at that precision, exactly as training-time evaluation scores it,
    so its number on the decision page is its number at the end of training.
    """
    device = resolve_device(device)
    precision = resolve_precision(precision, device)
    folder = check_model_folder(path)
    tokenizer = load_tokenizer(folder, base=base)
    if kind == "causal_lm":
        model = load_causal_lm(folder, dtype=TORCH_DTYPES[precision], base=base)
    else:
        # A folder without a trained one-output head gets a random one (model.tandem_new_head):
        # evaluate-reward reports what such a model scores; a review round refuses it.
        model = load_sequence_classifier(folder, pad_token_id=tokenizer.pad_token_id)
    model.requires_grad_(False).eval().to(device)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        device=device,
        precision=precision,
        model_dir=folder,
        is_adapter=is_adapter_folder(folder),
    )
