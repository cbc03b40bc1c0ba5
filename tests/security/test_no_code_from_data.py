"""No code from data: a pickle offered anywhere never runs, and no model brings its own code.

The canary is a real pickle whose unpickling writes a marker file (proved below by
unpickling it on purpose). It is offered as a dataset upload, as model weights, an adapter, a
checkpoint and a registered model folder, through each public entry point; the marker must
never appear. Each entry point's module is imported plainly, so a module that moves or fails
to import fails its test instead of skipping it; the grep test covers every file of the code
base.
"""

from __future__ import annotations

import builtins
import gzip
import json
import pickle
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CODE_DIRS = ("config", "annotation", "rlhf", "models_registry", "frontend", "bench", "scripts")


class Canary:
    """Unpickling this writes ``marker``: the proof that code from data ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.exec, (f"open({self.marker!r}, 'w').write('fired')",))


@pytest.fixture
def canary(tmp_path):
    marker = tmp_path / "canary-fired"
    return marker, pickle.dumps(Canary(marker), protocol=4)


def test_the_canary_fires_when_unpickled(canary):
    """Guard for the guard: without this, a canary that never fires proves nothing."""
    marker, data = canary
    pickle.loads(data)  # noqa: S301  (on purpose: our own canary, in a temp folder)
    assert marker.read_text() == "fired"


def _tiny_config(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": 64,
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
    }
    (folder / "config.json").write_text(json.dumps(config))


def _pickle_weights_folder(root: Path, data: bytes, *, decoy_safetensors=False) -> Path:
    folder = root / "model"
    _tiny_config(folder)
    for name in ("pytorch_model.bin", "model.pt", "adapter_model.bin", "training_args.bin"):
        (folder / name).write_bytes(data)
    if decoy_safetensors:
        (folder / "decoy.safetensors").write_bytes(b"not really")
    return folder


def test_pickle_code_execution_through_model_loading_never_fires_in_transformers(canary, tmp_path):
    """MLflow-class advisory: loading a model folder whose weights are a pickle. The platform
    loads with ``use_safetensors=True``; transformers must then refuse the pickle."""
    from transformers import AutoModelForCausalLM

    marker, data = canary
    folder = _pickle_weights_folder(tmp_path, data)
    with pytest.raises((OSError, EnvironmentError, ValueError)):
        AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True, trust_remote_code=False)
    assert not marker.exists()


def test_torch_weights_only_bypass_is_closed(canary, tmp_path):
    """torch < 2.6 loaded full pickles by default (and its weights_only had bypasses,
    CVE-2025-32434): require 2.6+, whose default unpickler refuses the canary, in both the
    legacy and the zip checkpoint formats."""
    import torch

    major, minor = (int(x) for x in re.findall(r"\d+", torch.__version__)[:2])
    assert (major, minor) >= (2, 6), f"torch {torch.__version__} loads pickles by default"
    marker, data = canary
    legacy = tmp_path / "legacy.pt"
    legacy.write_bytes(data)
    zipped = tmp_path / "zipped.pt"
    torch.save({"weights": torch.zeros(2), "evil": Canary(marker)}, zipped)
    for path in (legacy, zipped):
        with pytest.raises(pickle.UnpicklingError):
            torch.load(path)
    assert not marker.exists()


def test_a_pickle_uploaded_as_a_dataset_is_refused_and_never_unpickled(canary, db):
    from django.contrib.auth import get_user_model

    from annotation import importers, services
    from config.errors import ValidationFailed

    marker, data = canary
    user = get_user_model().objects.create_user("canary-importer", password="pw")
    project = services.project_create(name="Canary", created_by=user)
    for name, payload in [
        ("rows.jsonl", data),
        ("rows.pkl", data),
        ("rows.jsonl.gz", gzip.compress(data)),
        ("rows.csv", b"prompt\n" + data),
    ]:
        with pytest.raises(ValidationFailed):
            importers.import_file(
                project=project, data=payload, filename=name, kind="prompts", created_by=user
            )
    assert not marker.exists()


def test_engine_model_loading_refuses_pickle_weights(canary, tmp_path):
    from rlhf.training import loading as models

    marker, data = canary
    only_pickles = _pickle_weights_folder(tmp_path / "a", data)
    with pytest.raises(models.ModelFolderError):
        models.load_causal_lm(only_pickles)
    with pytest.raises(models.ModelFolderError):
        models.load_sequence_classifier(only_pickles)
    decoy = _pickle_weights_folder(tmp_path / "b", data, decoy_safetensors=True)
    with pytest.raises(Exception):  # noqa: B017, PT011  (any refusal; the marker is the test)
        models.load_causal_lm(decoy)
    assert not marker.exists()


def test_model_registry_refuses_a_folder_of_pickles(canary, tmp_path):
    from models_registry import artifacts

    marker, data = canary
    folder = _pickle_weights_folder(tmp_path, data)
    with pytest.raises(artifacts.UnsafeModelFolder):
        artifacts.inspect_model_folder(folder)
    (folder / "config.json").write_text(json.dumps({"auto_map": {"AutoModel": "evil.Model"}}))
    (folder / "model.safetensors").write_bytes(b"")
    with pytest.raises(artifacts.UnsafeModelFolder, match="custom code"):
        artifacts.inspect_model_folder(folder)
    assert not marker.exists()


def test_a_checkpoint_with_a_planted_pickle_does_not_verify(canary, tmp_path):
    from rlhf.training import checkpoints

    marker, data = canary
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "model.safetensors").write_bytes(b"weights")
    info = checkpoints.commit(staging, tmp_path / "ckpt", global_step=1, meta={})
    (info.path / "pytorch_model.bin").write_bytes(data)
    found, reason = checkpoints.verify(info.path)
    assert found is None
    assert "unlisted" in reason
    assert not marker.exists()


# The grep test: patterns that load code from data, anywhere in the code base.
FORBIDDEN = {
    "trust_remote_code enabled": re.compile(r"trust_remote_code\s*=\s*(True|1|[a-z_]+\))"),
    "pickle load": re.compile(r"\b(c?[Pp]ickle|dill|cloudpickle|joblib)\.(load|loads|Unpickler)\b"),
    "pandas read_pickle": re.compile(r"\bread_pickle\("),
    "numpy allow_pickle": re.compile(r"allow_pickle\s*=\s*True"),
    "torch weights_only off": re.compile(r"weights_only\s*=\s*False"),
    "safetensors off": re.compile(r"use_safetensors\s*=\s*False"),
    "yaml unsafe load": re.compile(r"yaml\.(unsafe_load|load)\((?![^)]*SafeLoader)"),
    "eval or exec": re.compile(r"(?<![.\w])(eval|exec)\("),
    "marshal load": re.compile(r"\bmarshal\.loads?\("),
}
TORCH_LOAD = re.compile(r"torch\.load\(([^()]|\([^()]*\))*\)", re.S)


def _code_files():
    for folder in CODE_DIRS:
        yield from sorted((REPO / folder).rglob("*.py"))


def test_trust_remote_code_is_never_enabled_and_nothing_unpickles():
    findings = []
    for path in _code_files():
        text = path.read_text(errors="replace")
        for what, pattern in FORBIDDEN.items():
            for match in pattern.finditer(text):
                line = text.count("\n", 0, match.start()) + 1
                findings.append(f"{path.relative_to(REPO)}:{line}: {what}")
        for match in TORCH_LOAD.finditer(text):
            if not re.search(r"weights_only\s*=\s*True", match.group(0)):
                line = text.count("\n", 0, match.start()) + 1
                findings.append(f"{path.relative_to(REPO)}:{line}: torch.load without weights_only")
    assert findings == []


def test_the_grep_test_sees_what_it_looks_for():
    samples = [
        "AutoModel.from_pretrained(p, trust_remote_code=True)",
        "pickle.loads(blob)",
        "torch.load(path, map_location='cpu')",
        "yaml.load(stream)",
        "exec(code)",
    ]
    for sample in samples:
        hit = any(p.search(sample) for p in FORBIDDEN.values()) or (
            TORCH_LOAD.search(sample) and "weights_only=True" not in sample
        )
        assert hit, sample
    assert not FORBIDDEN["eval or exec"].search("model.eval()")
