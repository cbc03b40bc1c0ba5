"""Fixtures for engine tests: tiny random models (built once per session) and small data.

Tests run on one CPU thread: on a shared 2-core machine, OpenMP's spinning threads make tiny
models ten times slower than a single thread does.
"""

from __future__ import annotations

import pytest
import torch

from rlhf.training.base_models import build_tiny_causal_lm, build_tiny_encoder

torch.set_num_threads(1)

TOPICS = ["bread", "tea", "a bike", "a kite", "soup", "a fence", "a poem", "a garden"]


def preference_rows(count: int, *, long_every: int = 4) -> list[dict]:
    """TRL-shape pairs where the chosen answer helps and the rejected one refuses.

    Every ``long_every``-th row has a long multi-turn history, so truncation is exercised.
    """
    rows = []
    for i in range(count):
        topic = TOPICS[i % len(TOPICS)]
        prompt = []
        if long_every and i % long_every == 0:
            for turn in range(6):
                prompt += [
                    {
                        "role": "user",
                        "content": f"Earlier question {turn} about {topic}, at length.",
                    },
                    {"role": "assistant", "content": f"Earlier answer {turn}, also long enough."},
                ]
        prompt.append({"role": "user", "content": f"How do I make {topic}?"})
        rows.append(
            {
                "id": f"pair-{i}",
                "prompt": prompt,
                "chosen": [
                    {"role": "assistant", "content": f"Here is how to make {topic}: step one."}
                ],
                "rejected": [{"role": "assistant", "content": "No."}],
                "margin": 1.0,
                "source": "pairwise",
            }
        )
    return rows


def sft_rows(count: int) -> list[dict]:
    return [
        {
            "id": f"sft-{i}",
            "messages": [
                {"role": "user", "content": f"How do I make {TOPICS[i % len(TOPICS)]}?"},
                {"role": "assistant", "content": "Start simply, then add the details."},
            ],
            "source": "correction" if i % 2 else "demonstration",
        }
        for i in range(count)
    ]


def prompt_rows(count: int) -> list[dict]:
    return [
        {"id": f"p-{i}", "prompt": [{"role": "user", "content": f"Tell me about {TOPICS[i % 8]}."}]}
        for i in range(count)
    ]


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory):
    return build_tiny_causal_lm(tmp_path_factory.mktemp("tiny-lm"))


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory):
    return build_tiny_encoder(tmp_path_factory.mktemp("tiny-encoder"))


# Settings every tiny training run shares: a couple of fp32 steps, no checkpoints.
FAST = {
    "max_steps": 2,
    "per_device_batch_size": 2,
    "max_length": 64,
    "precision": "fp32",
    "checkpoint_every_steps": 0,
    "learning_rate": 1e-2,
}
