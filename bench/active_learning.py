"""Does choosing which pairs to label beat labelling at random? (issue 16)

    python bench/active_learning.py [--data PATH] [--eval-data PATH] [--seed-labels 50]
        [--batch 50] [--rounds 8] [--repeats 3] [--eval-pairs 200]

The data file is an oracle: every row is an HH-RLHF pair whose label (which side was chosen)
stays hidden until the strategy picks the pair for "annotation". Without ``--eval-data`` the
last ``--eval-pairs`` rows are the evaluation set, never selected, and the rest is the pool;
with it, the whole ``--data`` file is the pool and ``--eval-data`` is evaluated.

Each repeat draws ``--seed-labels`` random pairs (the same for every strategy), then for
``--rounds`` rounds fits the reward model on the labelled pairs, scores the evaluation pairs
(pairwise accuracy, ties wrong) and lets the strategy pick the next ``--batch`` pairs. The
reward model is the platform's linear probe (``rlhf.training.head_probe``: a Bradley-Terry
head with its L2 chosen by cross-validation, ``--cv-repeats`` shuffles of 5 folds) on frozen
all-MiniLM-L6-v2 features, laid out as the reward trainer lays out encoder pairs; each response
is embedded once and cached. Accuracy counts a tie as half (a head that found no signal scores
every pair alike: chance). One thread by default: on a shared CPU, OpenMP's spinning threads
slow these small fits down.

The last line printed is one JSON object: ``{"strategies": {name: [mean accuracy per round]},
"std": {name: [std over repeats per round]}, "labels_per_round": [...], "eval_pairs": N,
"labels_saved_vs_random": x, ...}`` where ``labels_saved_vs_random`` is the fraction of labels
the best strategy needs to reach random's final accuracy (linear interpolation between rounds;
0 when no strategy reaches it).

Measured on hh_harmless_dev.jsonl (600-pair pool, last 200 evaluated, 50 seed labels, 8 rounds
of 50, shared 2-core CPU, 2026-12-05): at 450 labels random 0.611 +- 0.028 (std over 6
repeats), disagreement 0.640 +- 0.010, uncertainty 0.608 +- 0.012, mix 0.610 +- 0.023;
labels_saved_vs_random 0.23 (disagreement) over 6 repeats but 0.05 over 3, because random's
own noisy curve sets the target. Uncertainty and mix do not beat random; disagreement is ahead
from 200 labels on by about one random std, so random stays the default.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch

from bench.shared_data import shared_data
from rlhf.training import active
from rlhf.training.base_models import minilm_path
from rlhf.training.data import canonical_rows, read_jsonl
from rlhf.training.models import load_sequence_classifier, load_tokenizer, quiet_transformers

REWARD_MODEL = "linear probe (Bradley-Terry head, CV-chosen L2) on frozen all-MiniLM-L6-v2"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def pair_features(path: Path, *, max_length: int, cache_dir: Path) -> tuple[torch.Tensor, ...]:
    """``(chosen, rejected)`` features, ``(pairs, 384)`` each, cached by file content."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    cached = cache_dir / f"minilm-{digest}-{max_length}.pt"
    if cached.exists():
        return tuple(torch.load(cached))
    rows, bad = canonical_rows("preference", read_jsonl(path))
    if bad:
        log(f"{path.name}: {bad} rows could not be read and are left out")
    folder = minilm_path()
    with quiet_transformers():
        tokenizer = load_tokenizer(folder)
        model = load_sequence_classifier(folder, pad_token_id=tokenizer.pad_token_id)
    started = time.perf_counter()
    chosen, rejected = active.response_features(
        model,
        tokenizer,
        [(row["prompt"], row["chosen"], row["rejected"]) for row in rows],
        max_length=max_length,
    )
    log(
        f"embedded {2 * len(rows)} responses of {path.name} in {time.perf_counter() - started:.0f}s"
    )
    cache_dir.mkdir(parents=True, exist_ok=True)
    torch.save([chosen, rejected], cached)
    return chosen, rejected


def accuracy(reward: active.LinearReward, chosen: torch.Tensor, rejected: torch.Tensor) -> float:
    """Pairwise accuracy, a tie counted half: a head that found no signal (all zeros, see
    head_probe.head_weights) scores every pair the same and is at chance, 0.5, not 0."""
    gap = reward.scores(chosen) - reward.scores(rejected)
    return float(((gap > 0).double() + 0.5 * (gap == 0).double()).mean())


def run_strategy(
    config: active.SelectionConfig,
    pool: tuple[torch.Tensor, torch.Tensor],
    held_out: tuple[torch.Tensor, torch.Tensor],
    *,
    seed_labels: int,
    batch: int,
    rounds: int,
    cv_repeats: int,
) -> list[float]:
    """Accuracy after the seed labels and after each round's batch (``rounds + 1`` values)."""
    chosen, rejected = pool
    labelled = active.random_order(len(chosen), seed=config.seed)[:seed_labels]
    curve = []
    for round_number in range(rounds + 1):
        reward = active.fit_linear_reward(
            chosen[labelled], rejected[labelled], seed=config.seed, cv_repeats=cv_repeats
        )
        curve.append(accuracy(reward, *held_out))
        if round_number == rounds:
            break
        taken = set(labelled)
        candidates = [i for i in range(len(chosen)) if i not in taken]
        # The oracle's sides are (chosen, rejected); every score here is symmetric in a and b,
        # so the strategy learns nothing from the order.
        this_round = replace(config, seed=config.seed * 1000 + round_number)
        scores = active.pair_scores(
            this_round,
            reward,
            features_a=chosen[candidates],
            features_b=rejected[candidates],
            labelled_chosen=chosen[labelled],
            labelled_rejected=rejected[labelled],
        )
        order = active.selection_order(this_round, count=len(candidates), scores=scores)
        labelled += [candidates[i] for i in order[:batch]]
    return curve


def labels_to_reach(curve: list[float], labels: list[int], target: float) -> float | None:
    """Labels at which the curve first reaches ``target``, interpolated between rounds."""
    for i, value in enumerate(curve):
        if value >= target:
            if i == 0:
                return float(labels[0])
            before = curve[i - 1]
            fraction = (target - before) / (value - before)
            return labels[i - 1] + fraction * (labels[i] - labels[i - 1])
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=shared_data("hh_harmless_dev.jsonl"))
    parser.add_argument("--eval-data", type=Path, help="evaluate here; the whole --data is pool")
    parser.add_argument("--eval-pairs", type=int, default=200, help="without --eval-data")
    parser.add_argument("--seed-labels", type=int, default=50)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--strategies", default=",".join(active.STRATEGIES))
    parser.add_argument("--random-share", type=float, default=0.3, help="mix's random share")
    parser.add_argument("--ensemble", type=int, default=8, help="disagreement's members")
    parser.add_argument("--max-length", type=int, default=512, help="tokens per response")
    parser.add_argument(
        "--cv-repeats",
        type=int,
        default=1,
        help="shuffles of the penalty's 5-fold CV per fit (the reward trainer's probe: 3; one "
        "keeps 100+ fits affordable on a CPU)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: default)")
    parser.add_argument(
        "--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "tandem-active-features"
    )
    opts = parser.parse_args()
    if opts.threads:
        torch.set_num_threads(opts.threads)
    started = time.perf_counter()

    data = pair_features(opts.data, max_length=opts.max_length, cache_dir=opts.cache_dir)
    if opts.eval_data:
        pool = data
        held_out = pair_features(
            opts.eval_data, max_length=opts.max_length, cache_dir=opts.cache_dir
        )
    else:
        split = len(data[0]) - opts.eval_pairs
        pool, held_out = (data[0][:split], data[1][:split]), (data[0][split:], data[1][split:])
    needed = opts.seed_labels + opts.batch * opts.rounds
    if needed > len(pool[0]):
        raise SystemExit(f"{needed} labels asked of a pool of {len(pool[0])} pairs")
    labels = [opts.seed_labels + opts.batch * r for r in range(opts.rounds + 1)]

    names = opts.strategies.split(",")
    curves: dict[str, list[list[float]]] = {name: [] for name in names}
    for repeat in range(opts.repeats):
        for name in names:
            config = active.SelectionConfig(
                strategy=name,
                random_share=opts.random_share,
                ensemble_size=opts.ensemble,
                seed=repeat,
            )
            if errors := config.validate():
                raise SystemExit("; ".join(errors))
            t0 = time.perf_counter()
            curve = run_strategy(
                config,
                pool,
                held_out,
                seed_labels=opts.seed_labels,
                batch=opts.batch,
                rounds=opts.rounds,
                cv_repeats=opts.cv_repeats,
            )
            curves[name].append(curve)
            shown = " ".join(f"{value:.3f}" for value in curve)
            log(f"repeat {repeat} {name:12s} {shown}  ({time.perf_counter() - t0:.0f}s)")

    means = {n: torch.tensor(c).mean(0).tolist() for n, c in curves.items()}
    spread = {n: torch.tensor(c).std(0, unbiased=len(c) > 1).tolist() for n, c in curves.items()}
    saved: dict[str, float | None] = {}
    if "random" in means:
        target = means["random"][-1]
        random_needs = labels_to_reach(means["random"], labels, target)
        for name in names:
            if name != "random":
                needs = labels_to_reach(means[name], labels, target)
                saved[name] = None if needs is None else round(1 - needs / random_needs, 4)
    reached = [value for value in saved.values() if value is not None]
    for name in names:
        log(f"{name:12s} mean " + " ".join(f"{v:.3f}" for v in means[name]))
        log(f"{name:12s} std  " + " ".join(f"{v:.3f}" for v in spread[name]))
    print(
        json.dumps(
            {
                "strategies": {n: [round(v, 4) for v in means[n]] for n in names},
                "labels_per_round": labels,
                "eval_pairs": len(held_out[0]),
                "labels_saved_vs_random": max(reached, default=0.0),
                "std": {n: [round(v, 4) for v in spread[n]] for n in names},
                "saved_by_strategy": saved,
                "pool_pairs": len(pool[0]),
                "repeats": opts.repeats,
                "reward_model": REWARD_MODEL,
                "cv_repeats": opts.cv_repeats,
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
