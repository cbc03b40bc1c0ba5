"""The engine's process: which one, its command line, a free port, a health probe.

``transformers serve`` (``pip install transformers[serving]``) is the default: an
OpenAI-compatible ``/v1/chat/completions`` with SSE streaming and, with
``--continuous-batching``, paged-attention continuous batching on CPU and GPU. vLLM's OpenAI
server is chosen by ``auto`` only where vLLM is installed and a CUDA device is present.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys

import httpx

from models_registry.serving.models import EngineKind

AUTO = "auto"


def engine_available(kind: str) -> str | None:
    """None when ``kind`` can run here, else why not."""
    if kind == EngineKind.VLLM:
        if importlib.util.find_spec("vllm") is None:
            return "vLLM is not installed"
        import torch

        return None if torch.cuda.is_available() else "vLLM needs a CUDA device"
    try:
        from transformers.utils.import_utils import is_serve_available
    except ImportError:  # pragma: no cover - transformers is a dependency
        return "transformers is not installed"
    if not is_serve_available():
        return "transformers serve needs its extra: pip install 'transformers[serving]'"
    return None


def engine_choose(requested: str) -> str:
    if requested != AUTO:
        return requested
    return EngineKind.VLLM if engine_available(EngineKind.VLLM) is None else EngineKind.TRANSFORMERS


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


KV_BLOCK_TOKENS = 256


def engine_command(
    *, kind: str, folder: str, host: str, port: int, served_name: str, device: str = "auto",
    kv_cache_tokens: int = 16384, max_batch_tokens: int = 2048,
) -> tuple[list[str], str]:  # fmt: skip
    """(argv, the ``model`` name requests must carry upstream).

    The KV cache is sized here, not by the engine: left to itself, ``transformers serve``'s
    continuous batching takes 60% of the machine's RAM on a CPU (90% of a GPU's memory),
    which on a shared host, or with a second engine loading during a switch, is an OOM kill."""
    if kind == EngineKind.VLLM:
        argv = [sys.executable, "-m", "vllm.entrypoints.openai.api_server",
                "--model", folder, "--served-model-name", served_name,
                "--host", host, "--port", str(port),
                "--max-num-batched-tokens", str(max_batch_tokens)]  # fmt: skip
        return argv, served_name
    # The model on the command line pins the server to it: it is loaded once, at start, and a
    # request naming another model is refused (the gateway names this one).
    argv = [sys.executable, "-m", "transformers.cli.transformers", "serve", folder,
            "--host", host, "--port", str(port), "--continuous-batching",
            "--device", device, "--log-level", "warning",
            "--cb-block-size", str(KV_BLOCK_TOKENS),
            "--cb-num-blocks", str(max(1, kv_cache_tokens // KV_BLOCK_TOKENS)),
            "--cb-max-batch-tokens", str(max_batch_tokens)]  # fmt: skip
    return argv, folder


def engine_environment(*, kind: str, device: str = "auto") -> dict[str, str]:
    """What the engine's process gets on top of the serving process's own environment.

    On a CPU, ``transformers serve``'s continuous batching packs the requests of a step into
    one sequence and runs SDPA over it with a mask; with grouped-query attention (SmolLM2,
    Llama) transformers then copies each layer's keys and values once per query head
    (``repeat_kv``) unless ``TRANSFORMERS_SDPA_FORCE_GQA`` lets SDPA read the shared heads
    itself. Measured on this project's 2-core CPU with SmolLM2-135M, 16 streams: 73 against
    57 tokens/s, the same tokens (docs/architecture.md, serving). Not set for a GPU: there a
    mask with GQA can send SDPA to its slow math kernel, and flash attention is used anyway."""
    if kind != EngineKind.TRANSFORMERS:
        return {}
    if device == "auto":
        device = "accelerator" if _accelerator_present() else "cpu"
    return {"TRANSFORMERS_SDPA_FORCE_GQA": "1"} if device == "cpu" else {}


def _accelerator_present() -> bool:
    """Whether ``--device auto`` (``device_map="auto"``) would put the engine on something
    other than the CPU: a CUDA, XPU, MPS or Ascend NPU device."""
    import torch

    if torch.cuda.is_available():
        return True
    if getattr(torch, "xpu", None) is not None and torch.xpu.is_available():
        return True
    if torch.backends.mps.is_available():
        return True
    return importlib.util.find_spec("torch_npu") is not None


def engine_process_start(argv: list[str], *, env: dict[str, str], log) -> subprocess.Popen:
    """The engine's process, in its own session (the supervisor signals its whole group),
    with ``env`` on top of this process's environment and its output to ``log``; on Linux it
    ends when this process dies, however it dies (``engine_launch``)."""
    launch = [sys.executable, "-m", "models_registry.serving.engine_launch", str(os.getpid()), "--"]
    return subprocess.Popen(  # noqa: S603 (our interpreter, the engine's own command)
        [*launch, *argv], stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, **env},
    )  # fmt: skip


def engine_healthy(url: str, *, timeout_s: float = 2.0) -> bool:
    """The engine answers ``/health`` (transformers) or ``/v1/models`` (vLLM) with 200."""
    for path in ("/health", "/v1/models"):
        try:
            if httpx.get(url + path, timeout=timeout_s).status_code == 200:
                return True
        except httpx.HTTPError:
            return False
    return False
