"""Evaluation of trained models: reward-model pairwise accuracy, perplexity, BLEU/ROUGE.

Pairwise accuracy counts a tie (equal scores) as wrong, so a model that scores everything the
same gets 0, not 0.5. The Bradley-Terry loss of a model that learned nothing is ln 2 (0.693):
an evaluation loss of 0.69 or more raises the ``nothing_learned`` flag.
"""

from __future__ import annotations

from pathlib import Path

import torch

from rlhf.data.audit import reward_probes
from rlhf.training import rollout
from rlhf.training.data import canonical_rows, read_jsonl
from rlhf.training.intervals import wilson_interval
from rlhf.training.loading import load_for_inference
from rlhf.training.tokens import chat_template_sha256, encode_decoder

# ln 2 = 0.6931 is chance; 0.69 leaves no room for "learned a little, by luck".
NOTHING_LEARNED_LOSS = 0.69


def pairwise_accuracy(
    model,
    tokenizer,
    rows: list[dict],
    *,
    max_length: int,
    device: str,
    precision: str,
    batch_size: int = 16,
    chosen_sides: list[str | None] | None = None,
) -> dict:
    """Accuracy (ties wrong) with its 95% Wilson interval, ties, mean Bradley-Terry loss and
    margin over canonical pairs, and the data audit's length and position probes
    (``rlhf.data.audit.reward_probes``; ``chosen_sides``: the side each pair's chosen answer
    was shown on, where recorded)."""
    if not rows:
        return {"pairs": 0, "accuracy": None, "ties": 0, "loss": None, "nothing_learned": None}
    scores, truncated = rollout.score_answers(
        model,
        tokenizer,
        [row["prompt"] for row in rows],
        [[row["chosen"], row["rejected"]] for row in rows],
        max_length=max_length,
        device=device,
        precision=precision,
        batch_size=batch_size,
    )
    chosen = torch.tensor([pair[0] for pair in scores], dtype=torch.float64)
    rejected = torch.tensor([pair[1] for pair in scores], dtype=torch.float64)
    diff = chosen - rejected
    loss = float(-torch.nn.functional.logsigmoid(diff).mean())
    accuracy = float((diff > 0).double().mean())
    return {
        "pairs": len(rows),
        "accuracy": accuracy,
        "accuracy_ci95": list(wilson_interval(accuracy, len(rows))),
        "ties": int((diff == 0).sum()),
        "loss": loss,
        "mean_margin": float(diff.mean()),
        "truncated_pairs": truncated,
        "nothing_learned": loss >= NOTHING_LEARNED_LOSS,
        "bias_probes": reward_probes(
            chosen.tolist(),
            rejected.tolist(),
            [row["chosen"] for row in rows],
            [row["rejected"] for row in rows],
            chosen_sides,
        ),
    }


def evaluate_reward(
    model_dir: str | Path,
    data_file: str | Path,
    *,
    max_length: int = 512,
    batch_size: int = 16,
    device: str = "auto",
    precision: str = "auto",
) -> dict:
    """Score a reward model folder on a preference .jsonl (HH-RLHF or TRL shape)."""
    loaded = load_for_inference(model_dir, kind="reward_model", device=device, precision=precision)
    rows, unreadable = canonical_rows("preference", read_jsonl(Path(data_file)))
    result = pairwise_accuracy(
        loaded.model,
        loaded.tokenizer,
        rows,
        max_length=rollout.scoring_max_length(loaded.tokenizer, loaded.model, max_length),
        device=loaded.device,
        precision=loaded.precision,
        batch_size=batch_size,
    )
    result["unreadable_rows"] = unreadable
    result["chat_template_sha256"] = chat_template_sha256(loaded.tokenizer)
    result["device"] = loaded.device
    result["precision"] = loaded.precision
    result["batch_size"] = batch_size
    return result


def perplexity(
    model,
    tokenizer,
    rows: list[dict],
    *,
    max_length: int,
    device: str,
    precision: str,
    batch_size: int = 8,
) -> float | None:
    """exp(mean NLL) of the final assistant answers given their conversations."""
    contexts, answers = [], []
    for row in rows:
        encoded = encode_decoder(
            tokenizer, row["messages"][:-1], [row["messages"][-1]["content"]], max_length
        )
        contexts.append(encoded.prompt_ids)
        answers.append(encoded.completion_ids[0])
    log_probs = rollout.continuation_log_probs(
        model,
        contexts,
        answers,
        pad_id=tokenizer.pad_token_id,
        device=device,
        precision=precision,
        batch_size=batch_size,
    )
    return rollout.perplexity(log_probs)


def generation_scores(
    model,
    tokenizer,
    rows: list[dict],
    *,
    max_length: int,
    max_new_tokens: int,
    device: str,
    precision: str,
    batch_size: int = 8,
) -> dict:
    """Greedy answers to held-out conversations, scored against the reference answer."""
    if not rows:
        return {"generations": 0}
    hypotheses, references = [], []
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        prompts = [
            encode_decoder(
                tokenizer, r["messages"][:-1], [""], max_length - max_new_tokens
            ).prompt_ids
            for r in batch
        ]
        _, _, response = rollout.generate(
            model,
            prompts,
            pad_id=tokenizer.pad_token_id,
            eos_id=tokenizer.eos_token_id,
            max_new_tokens=max_new_tokens,
            device=device,
            precision=precision,
            do_sample=False,
        )
        hypotheses += tokenizer.batch_decode(response, skip_special_tokens=True)
        references += [r["messages"][-1]["content"] for r in batch]
    return overlap_scores(hypotheses, references)


def overlap_scores(hypotheses: list[str], references: list[str]) -> dict:
    """Corpus BLEU (sacrebleu, 0-100) and mean ROUGE-1/ROUGE-L F1 (rouge_score, stemmed) of
    generated answers against one reference each; shared by decoder and seq2seq SFT."""
    import sacrebleu
    from rouge_score import rouge_scorer

    if not hypotheses:
        return {"generations": 0}
    bleu = sacrebleu.corpus_bleu(hypotheses, [references]).score
    scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)
    rouge = [scorer.score(ref, hyp) for ref, hyp in zip(references, hypotheses, strict=True)]
    return {
        "generations": len(hypotheses),
        "bleu": bleu,
        "rouge1_f": sum(r["rouge1"].fmeasure for r in rouge) / len(rouge),
        "rougeL_f": sum(r["rougeL"].fmeasure for r in rouge) / len(rouge),
    }
