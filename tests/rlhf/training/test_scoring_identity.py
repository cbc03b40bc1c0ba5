"""One inference stack: a reward model gives a (prompt, response) pair the same score wherever
the platform scores it, and precision "auto" means the same thing in training and evaluation.

The three places a pair is scored: training-time evaluation (``pairwise_accuracy`` after a
reward run, and the online methods' reward function), ``python -m rlhf.training
evaluate-reward``, and the review round's evaluation (``evaluate_policy_folder``'s reward model).
"""

import json

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from rlhf.training import DatasetSplits, SFTConfig, runner
from rlhf.training import loading as loading_module
from rlhf.training.base_models import build_tiny_causal_lm, build_tiny_encoder
from rlhf.training.evaluation import evaluate_reward, pairwise_accuracy
from rlhf.training.generation import load_causal_lm
from rlhf.training.loading import load_sequence_classifier, load_tokenizer
from rlhf.training.methods import MethodSpec
from rlhf.training.online import RewardModelScorer
from rlhf.training.policy_eval import load_reward_model, score_rewards

from .conftest import sft_rows

CONVERSATIONS = [
    [{"role": "user", "content": "How do I make bread?"}],
    [
        {"role": "user", "content": "Tell me about tea."},
        {"role": "assistant", "content": "Tea is a drink."},
        {"role": "user", "content": "And how do I brew it?"},
    ],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Paris?"}],
]
CHOSEN = ["Mix flour, water and yeast, then bake it.", "Steep it for three minutes.", "France."]
REJECTED = ["No.", "I will not say.", "A city, the capital of France, on the Seine, in Europe."]


def build_reward_model(out, backbone: str):
    """A tiny random reward model (one-logit head) of the backbone, saved as a folder.

    The encoder's tokenizer has no chat template, like MiniLM's: that is what makes the
    platform read it as ``[CLS] conversation [SEP] answer [SEP]``.
    """
    (build_tiny_encoder if backbone == "encoder" else build_tiny_causal_lm)(out)
    if backbone == "encoder":
        tokenizer = AutoTokenizer.from_pretrained(out)
        tokenizer.chat_template = None
        for path in out.glob("chat_template.*"):
            path.unlink()
        tokenizer.save_pretrained(out)
    torch.manual_seed(5)
    model = AutoModelForSequenceClassification.from_pretrained(out, num_labels=1)
    model.save_pretrained(out, safe_serialization=True)
    return out


@pytest.fixture(scope="module", params=["encoder", "decoder"])
def reward_dir(request, tmp_path_factory):
    return build_reward_model(tmp_path_factory.mktemp(f"reward-{request.param}"), request.param)


def review_round_scores(reward_dir, answers):
    """What ``evaluate_policy_folder`` does with its reward model folder."""
    reward_model = load_reward_model(reward_dir, device="cpu", dtype="float32")
    return score_rewards(reward_model, CONVERSATIONS, answers).rewards


def canonical_row(conversation, chosen, rejected):
    """The shape the engine's training code reads (``data.canonical_rows``)."""
    return {"prompt": conversation, "chosen": chosen, "rejected": rejected}


def preference_row(conversation, chosen, rejected):
    """The TRL shape a preference .jsonl holds."""
    return {
        "prompt": conversation,
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
    }


def test_a_pair_scores_the_same_in_training_evaluate_reward_and_the_review_round(
    reward_dir, tmp_path
):
    # given the review round's rewards for chosen and rejected answers (float32 on the CPU)
    review_chosen = review_round_scores(reward_dir, CHOSEN)
    review_rejected = review_round_scores(reward_dir, REJECTED)
    review_margins = [c - r for c, r in zip(review_chosen, review_rejected, strict=True)]
    assert len(set(review_chosen)) == 3  # the pairs are told apart

    # when the online methods' reward function scores the same answers
    scorer = RewardModelScorer(reward_dir, device="cpu", precision="fp32")
    completions = [[{"role": "assistant", "content": a}] for a in CHOSEN]
    # then it gives exactly the review round's rewards
    assert scorer(CONVERSATIONS, completions) == pytest.approx(review_chosen, abs=1e-5)

    # when training-time evaluation (pairwise accuracy after a reward run) scores each pair
    tokenizer = load_tokenizer(reward_dir)
    model = load_sequence_classifier(reward_dir, pad_token_id=tokenizer.pad_token_id)
    training_margins = [
        pairwise_accuracy(
            model,
            tokenizer,
            [canonical_row(*row)],
            max_length=512,
            device="cpu",
            precision="fp32",
        )["mean_margin"]
        for row in zip(CONVERSATIONS, CHOSEN, REJECTED, strict=True)
    ]
    # then each pair's margin is the review round's
    assert training_margins == pytest.approx(review_margins, abs=1e-5)

    # when evaluate-reward scores a file holding each pair
    cli_margins = []
    for i, row in enumerate(zip(CONVERSATIONS, CHOSEN, REJECTED, strict=True)):
        data = tmp_path / f"pair-{i}.jsonl"
        data.write_text(json.dumps(preference_row(*row)) + "\n")
        result = evaluate_reward(reward_dir, data, device="cpu", precision="fp32")
        cli_margins.append(result["mean_margin"])
    # then it gives the same margins too
    assert cli_margins == pytest.approx(review_margins, abs=1e-5)


def test_auto_precision_is_one_rule_in_training_and_evaluation(monkeypatch, tmp_path):
    # given a tiny policy folder and a run whose method is replaced by a probe of its context
    policy_dir = build_tiny_causal_lm(tmp_path / "policy")
    reward_dir = build_reward_model(tmp_path / "reward", "decoder")
    seen = {}

    def probe(spec, ctx):
        seen["training"] = ctx.precision
        raise RuntimeError("probe: stop before training")

    monkeypatch.setattr(MethodSpec, "train", probe)
    for capable, expected, dtype in (
        (True, "bf16", torch.bfloat16),
        (False, "fp32", torch.float32),
    ):
        # when the hardware probe says the CPU does (or does not) compute bf16 natively
        monkeypatch.setattr(loading_module, "bf16_supported", lambda device, c=capable: c)
        config = SFTConfig(base_model=str(policy_dir), device="cpu", precision="auto")
        with pytest.raises(RuntimeError, match="probe"):
            runner.run_training(
                "sft", config, DatasetSplits(train=sft_rows(2)), tmp_path / f"run-{capable}"
            )
        policy = load_causal_lm(policy_dir, device="cpu", dtype="auto")
        reward_model = load_reward_model(reward_dir, device="cpu", dtype="auto")

        # then training, generation and reward scoring all resolve "auto" the same way
        assert seen["training"] == expected
        assert (policy.precision, reward_model.precision) == (expected, expected)
        assert next(policy.model.parameters()).dtype == dtype
