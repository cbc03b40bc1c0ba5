"""Loading models and tokenizers safely: local folders, safetensors only, no remote code.

A model folder is either full weights (``*.safetensors`` + ``config.json``) or a LoRA adapter
(``adapter_config.json`` + ``adapter_model.safetensors``) over a local base folder; an adapter is
merged into its base on load, so the returned model *is* the parent version.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path

import torch

from rlhf.training.base_models import minilm_path


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


def load_tokenizer(path: str | Path):
    from transformers import AutoTokenizer

    folder = check_model_folder(path)
    source = adapter_base(folder) if is_adapter_folder(folder) else folder
    # An adapter folder may carry the tokenizer it was trained with; prefer it.
    if (folder / "tokenizer_config.json").is_file():
        source = folder
    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


def load_causal_lm(path: str | Path, *, dtype=torch.float32):
    """A causal LM from full weights, or a base with its LoRA adapter merged in."""
    from transformers import AutoModelForCausalLM

    folder = check_model_folder(path)
    with quiet_transformers():
        if is_adapter_folder(folder):
            from peft import PeftModel

            base = AutoModelForCausalLM.from_pretrained(
                adapter_base(folder), dtype=dtype, use_safetensors=True, trust_remote_code=False
            )
            model = PeftModel.from_pretrained(base, folder).merge_and_unload()
        else:
            model = AutoModelForCausalLM.from_pretrained(
                folder, dtype=dtype, use_safetensors=True, trust_remote_code=False
            )
    return model


def reward_model_source(backbone: str, base_model: str) -> Path:
    if backbone == "encoder" and not base_model:
        return minilm_path()
    if not base_model:
        raise ModelFolderError("base_model is required")
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
    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules="all-linear" if targets == ["all-linear"] else list(targets),
        task_type=task_type,
        modules_to_save=modules_to_save,
    )


def resolve_device(requested: str) -> str:
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


def resolve_precision(requested: str, device: str) -> str:
    """'bf16', 'fp16' or 'fp32'; 'auto' picks bf16 where the hardware computes it natively."""
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
