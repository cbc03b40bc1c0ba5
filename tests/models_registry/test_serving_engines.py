"""The engine's process: its environment (and that what it changes leaves the answers as they
were), and that it ends with the serving process that started it.

``engine_environment`` turns on ``TRANSFORMERS_SDPA_FORCE_GQA`` for ``transformers serve`` on a
CPU (SDPA reads the grouped key/value heads instead of transformers copying them per query
head; 16 streams of SmolLM2-135M: 73 against 57 tokens/s on this project's CPU). Here: where
it is set, and that continuous batching, as the engine runs it, gives the same greedy tokens
with it as without, on a grouped-query model of SmolLM2's family.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from models_registry.serving import engines
from models_registry.serving.models import EngineKind
from rlhf.training.base_models import build_tiny_causal_lm

FORCE_GQA = "TRANSFORMERS_SDPA_FORCE_GQA"


def test_only_a_transformers_engine_on_a_cpu_gets_sdpa_reading_the_grouped_heads(monkeypatch):
    on_cpu = {FORCE_GQA: "1"}
    assert engines.engine_environment(kind=EngineKind.TRANSFORMERS, device="cpu") == on_cpu
    assert engines.engine_environment(kind=EngineKind.TRANSFORMERS, device="cuda") == {}
    assert engines.engine_environment(kind=EngineKind.TRANSFORMERS, device="cuda:1") == {}
    assert engines.engine_environment(kind=EngineKind.VLLM, device="cpu") == {}
    # "auto" is where the engine will run: the GPU when there is one
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert engines.engine_environment(kind=EngineKind.TRANSFORMERS, device="auto") == on_cpu
    monkeypatch.setattr(torch.xpu, "is_available", lambda: True)  # device_map="auto" takes it
    assert engines.engine_environment(kind=EngineKind.TRANSFORMERS, device="auto") == {}
    monkeypatch.setattr(torch.xpu, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert engines.engine_environment(kind=EngineKind.TRANSFORMERS, device="auto") == {}


def test_continuous_batching_gives_the_same_greedy_tokens_with_the_grouped_heads_read_by_sdpa(
    tmp_path, monkeypatch
):
    from transformers import AutoModelForCausalLM, GenerationConfig

    folder = build_tiny_causal_lm(tmp_path / "tiny", hidden_size=64, layers=3, seed=3)
    model = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="sdpa")
    model.eval()
    assert model.config.num_key_value_heads < model.config.num_attention_heads  # grouped
    generator = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    # prompts of different lengths, packed into one sequence per step as the engine does
    prompts = [
        torch.randint(5, vocab, (length,), generator=generator).tolist()
        for length in (3, 17, 9, 40, 1, 25)
    ]
    config = GenerationConfig(do_sample=False, max_new_tokens=12, eos_token_id=None, pad_token_id=0)

    sdpa = torch.nn.functional.scaled_dot_product_attention
    gqa_calls = []

    def counting(*args, **kwargs):
        gqa_calls.append(bool(kwargs.get("enable_gqa")))
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", counting)

    def generate() -> list[list[int]]:
        outputs = model.generate_batch(prompts, generation_config=config, warmup=False)
        by_prompt = {tuple(o.prompt_ids): o.generated_tokens for o in outputs.values()}
        return [by_prompt[tuple(p)] for p in prompts]

    monkeypatch.delenv(FORCE_GQA, raising=False)
    copied = generate()
    assert gqa_calls
    assert not any(gqa_calls)  # transformers copied the heads (repeat_kv)
    gqa_calls.clear()
    monkeypatch.setenv(FORCE_GQA, "1")
    grouped = generate()
    assert gqa_calls
    assert all(gqa_calls)  # the setting still reaches SDPA in this transformers

    assert all(len(tokens) == 12 for tokens in copied)
    assert grouped == copied


# ----------------------------------------------------------------------------- its lifetime

PARENT = """
import sys, time
import django

django.setup()
from models_registry.serving.engines import engine_process_start

child = engine_process_start(
    [sys.executable, "-c", "import time; time.sleep(600)"], env={}, log=None
)
print(child.pid, flush=True)
time.sleep(600)
"""


def alive(pid: int) -> bool:
    """Running (a zombie no one reaped yet has ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_an_engine_ends_when_the_serving_process_that_started_it_is_killed():
    """``serve`` killed (SIGKILL: no handler, no ``stop_all``) takes its engines with it."""
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True, cwd=Path.cwd(),
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"},
    )  # fmt: skip
    engine = int(parent.stdout.readline())
    try:
        time.sleep(1.0)
        assert alive(engine)  # it runs while its serving process does
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        deadline = time.monotonic() + 20
        while alive(engine) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(engine)
    finally:
        if alive(engine):
            os.kill(engine, signal.SIGKILL)
        if parent.poll() is None:
            parent.kill()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_the_launcher_refuses_an_engine_whose_serving_process_is_already_gone():
    launched = subprocess.run(
        # any pid but ours: the launcher's parent is this process
        [sys.executable, "-m", "models_registry.serving.engine_launch", str(os.getpid() + 1), "--",
         sys.executable, "-c", "print('the engine ran')"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert launched.returncode != 0
    assert "is gone" in launched.stderr
    assert "the engine ran" not in launched.stdout
