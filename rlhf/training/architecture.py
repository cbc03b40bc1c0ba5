"""What a model folder holds, and what a run actually loaded: the facts that make a run's record
say which model it trained.

Two rules, one place each:
- ``folder_family`` reads a folder's ``config.json`` (no torch, no weights: the web process
  asks it at launch) and says whether it holds a decoder, a BERT-type encoder or an
  encoder-decoder; ``backbone_conflict`` refuses a reward run whose ``backbone`` and
  ``base_model`` disagree, at launch (the platform) and again in the engine (the CLI).
- ``describe_loaded`` names a loaded model's architecture, parameter count and source folder,
  for the run's log and its result (``TrainingResult.loaded_models``).
"""

from __future__ import annotations

import json
from pathlib import Path

# BERT-type encoders (model_type in config.json). A config with is_decoder set is not one.
ENCODER_TYPES = frozenset(
    {
        "albert",
        "bert",
        "camembert",
        "deberta",
        "deberta-v2",
        "distilbert",
        "electra",
        "modernbert",
        "mpnet",
        "roberta",
        "xlm-roberta",
    }
)


def folder_config(path: str | Path) -> dict | None:
    """The folder's config.json (an adapter's: its base's), or None when there is none."""
    folder = Path(path)
    adapter = folder / "adapter_config.json"
    if adapter.is_file() and not (folder / "config.json").is_file():
        try:
            base = json.loads(adapter.read_text()).get("base_model_name_or_path") or ""
        except (OSError, ValueError):
            return None
        folder = Path(base)
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) else None


def folder_family(path: str | Path) -> tuple[str, str] | None:
    """("decoder" | "encoder" | "seq2seq", what the config names), or None without a config."""
    config = folder_config(path)
    if config is None:
        return None
    model_type = str(config.get("model_type") or "")
    architectures = config.get("architectures") or []
    named = architectures[0] if architectures and isinstance(architectures[0], str) else ""
    shown = f"{named or model_type or 'unknown'} ({model_type or 'no model_type'})"
    if config.get("is_encoder_decoder"):
        return "seq2seq", shown
    if model_type in ENCODER_TYPES and not config.get("is_decoder"):
        return "encoder", shown
    return "decoder", shown


def backbone_conflict(backbone: str, base_model: str) -> tuple[str, str] | None:
    """(field, reason) when a reward run's ``backbone`` contradicts its ``base_model`` folder.

    An empty base_model with backbone 'encoder' means the packaged MiniLM: no conflict.
    """
    if not base_model:
        return None
    found = folder_family(base_model)
    if found is None:
        return None
    family, shown = found
    if backbone == "encoder" and family != "encoder":
        return (
            "base_model",
            f"holds a {family} ({shown}), but backbone is 'encoder': leave base_model empty "
            "for the packaged all-MiniLM-L6-v2, name a BERT-type encoder folder, or choose "
            "backbone 'decoder'",
        )
    if backbone == "decoder" and family != "decoder":
        return (
            "backbone",
            f"is 'decoder', but base_model holds an {family} ({shown}): choose backbone "
            "'encoder' for a BERT-type folder",
        )
    return None


def describe_loaded(model, *, role: str, source: str | Path) -> dict:
    """What was loaded for ``role`` (policy, reward model, reference, value model, ...)."""
    config = getattr(model, "config", None)
    # LoRA layers peft injected into it later are not part of what was loaded.
    parameters = sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n)
    return {
        "role": role,
        "architecture": type(model).__name__,
        "model_type": getattr(config, "model_type", None),
        "layers": getattr(config, "num_hidden_layers", None),
        "parameters": int(parameters),
        "source": str(Path(source).resolve()),
    }


def loaded_line(info: dict) -> str:
    """One log line for a ``describe_loaded`` record."""
    millions = info["parameters"] / 1e6
    layers = f", {info['layers']} layers" if info.get("layers") else ""
    return (
        f"loaded {info['role']}: {info['architecture']} ({millions:.2f}M parameters{layers}) "
        f"from {info['source']}"
    )
