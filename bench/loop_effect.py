"""What does one round of the loop buy? (issue 16)

    python bench/loop_effect.py [--data PATH] [--judge-data PATH] [--eval-prompts PATH]
        [--prompts 64] [--test-share 0.25] [--set dpo.FIELD=JSON ...] [--tiny]

One whole round through the platform's services, on real parts, in a scratch platform (a
migrated SQLite database in a temporary folder, or ``--database-url``):

1. the pairs of ``--data`` are cut in two halves by a hash of their prompt (a prompt's pairs stay
   together): the **round's half** is imported into a project as labels (``import_file``,
   ``preferences``), the **judge's half** is kept away from the platform;
2. ``models_registry.loop.loop_run``, as ``manage.py loop`` runs it: snapshot of the labels
   (test share ``--test-share`` of the prompts), the encoder reward model (all-MiniLM-L6-v2 from
   the bundled package), DPO with LoRA from the base (SmolLM2-135M-Instruct from the bundled
   package, the registered champion), the candidate registered and put up for review; the
   review round's prompts are ``--prompts`` prompts of the snapshot's test split, pinned (no
   fresh ones), so neither model trained on them; both versions answer them (the review
   tasks) and the round's evaluation records the round's reward model's mean score, the KL to
   the parent and the lengths (``loop_round_evaluate``);
3. an independent **judge** reward model, the same reward recipe (``RewardConfig`` defaults,
   encoder) trained on the judge's half alone (``--judge-data FILE``: on that file instead, and
   the round then uses all of ``--data``), scores the candidate's and the parent's answer to
   each prompt: a prompt is a win, a loss or (equal scores, identical answers) a tie.

``--eval-prompts FILE`` (one conversation per line: ``{"messages": [...]}``, ``{"prompt": ...}``,
an HH-RLHF pair or a plain ``{"text"/"question"/"turns"}`` row) pins those prompts instead of
the test split's. ``--set dpo.learning_rate=1e-4`` changes one field of a step (``reward``,
``dpo``, ``generation``) over ``manage.py loop``'s CPU size; ``--tiny`` runs the same path on
tiny random models in seconds (a smoke test: its figures mean nothing).

Figures (the round report's, ``review_selectors.loop_round_report``, plus the judge's):
``rm_gain``: the round's reward model, mean over prompts, candidate minus parent;
``judge_win_rate``: (wins + ties/2) / prompts with its 95% Wilson interval
(``models_registry.stats.win_rate``, the review page's rule); ``kl_to_parent``: nats per answer
(``policy_eval``: the summed log-ratio on the candidate's own answers); ``length_ratio``: the
candidate's mean new tokens over the parent's; ``unchanged_share``: prompts where both wrote the
same text; ``dpo_eval``: the DPO run's held-out reward accuracy and margin (TRL's implicit
reward on the snapshot's validation pairs, when it has some);
``judge_win_rate_length_controlled`` (with ``_ci`` and ``judge_length_slope``): shorter or
better? the judge's outcomes regressed on the answers' length difference (characters) and read
at equal length, as AlpacaEval's length-controlled win rate (``stats.length_controlled_win_rate``):
a candidate that wins only by writing shorter (or longer) falls back towards 0.5 here.

The last line printed is one JSON object: ``{prompts, rm_gain, judge_win_rate,
judge_win_rate_ci, kl_to_parent, length_ratio, minutes, ...}``. Target: judge win rate >= 0.55
with its interval above 0.5, KL bounded, length ratio <= 1.3.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bench.annotation_load import BENCH_FIELD_KEYS  # noqa: E402
from bench.shared_data import shared_data  # noqa: E402


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def prompt_key(row: dict) -> str:
    from formats.preference import parse_preference_row

    prompt = parse_preference_row(row).prompt
    return hashlib.sha256(json.dumps(prompt, sort_keys=True).encode()).hexdigest()


def halves(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """(round's, judge's) by the parity of the prompt's hash: a prompt never lands in both."""
    first, second = [], []
    for row in rows:
        (first if int(prompt_key(row)[:8], 16) % 2 == 0 else second).append(row)
    return first, second


def eval_conversation(row: dict) -> list[dict]:
    """One prompt from a row: messages, a prompt, a preference pair's prompt, or MT-Bench's
    first turn (the second turn refers to an answer this bench does not write)."""
    from formats.preference import as_conversation, parse_preference_row

    if "messages" in row:
        return as_conversation(row["messages"])
    if "chosen" in row:
        return parse_preference_row(row).prompt
    if "prompt" in row:
        return as_conversation(row["prompt"])
    if row.get("turns"):
        return as_conversation(row["turns"][0])
    for key in ("question", "text"):
        if isinstance(row.get(key), str):
            return as_conversation(row[key])
    raise SystemExit(f"no prompt in {sorted(row)}: give messages, prompt, turns or text")


def eval_conversations(path: Path) -> list[list[dict]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [eval_conversation(json.loads(line)) for line in lines if line.strip()]


def parse_sets(values: list[str]) -> dict[str, dict]:
    overrides: dict[str, dict] = {}
    for item in values:
        key, _, raw = item.partition("=")
        step, _, field = key.partition(".")
        if not field or not raw:
            raise SystemExit(f"--set {item!r}: expected STEP.FIELD=JSON, e.g. dpo.beta=0.1")
        overrides.setdefault(step, {})[field] = json.loads(raw)
    return overrides


def setup_platform(scratch: Path, database_url: str) -> None:
    env = {
        "DATABASE_URL": database_url or f"sqlite:///{scratch / 'db.sqlite3'}",
        "TANDEM_ARTIFACT_ROOT": str(scratch / "artifacts"),
        "TANDEM_LOG_LEVEL": "WARNING",
        "DJANGO_DEBUG": "0",
        "TANDEM_SNAPSHOT_WORKERS": "0",
        "TANDEM_FIELD_KEYS": BENCH_FIELD_KEYS,
    }
    os.environ.update(env)
    os.environ.pop("REDIS_URL", None)  # the in-process channel layer: nobody watches
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=REPO,
        env={**os.environ},
        check=True,
    )
    import django

    django.setup()


def train_judge(rows: list[dict], scratch: Path, *, tiny: bool, encoder: Path | None) -> Path:
    """The independent judge: the reward recipe's defaults on rows the round never saw."""
    from rlhf.training.config import RewardConfig
    from rlhf.training.data import DatasetSplits, canonical_rows
    from rlhf.training.runner import run_training

    canonical, bad = canonical_rows("preference", rows)
    if bad:
        log(f"judge data: {bad} rows could not be read and are left out")
    extra = {"max_steps": 4, "max_length": 64, "learning_rate": 1e-3} if tiny else {}
    config = RewardConfig(
        backbone="encoder",
        base_model=str(encoder) if encoder else "",
        checkpoint_every_steps=0,
        log_every_steps=20,
        **extra,
    )
    result = run_training(
        "reward", config, DatasetSplits(train=canonical, source="judge"), scratch / "judge"
    )
    return Path(result.model_dir or scratch / "judge" / "model")


def round_answers(review_round) -> list[tuple[str, str]]:
    """(candidate's text, parent's text) per prompt the round asked, in the round's order."""
    from annotation.models import Response
    from models_registry.models import GenerationJob

    by_version: dict[int, dict[int, str]] = {}
    for job in GenerationJob.objects.filter(pk__in=review_round.generation_job_ids):
        texts = by_version.setdefault(job.version_id, {})
        for response in Response.objects.filter(
            prompt_id__in=job.prompt_ids, model_name=job.version.response_model_name
        ):
            if response.generation.get("generation_job_id") == job.pk:
                texts[response.prompt_id] = response.text
    mine = by_version.get(review_round.version_id, {})
    theirs = by_version.get(review_round.opponent_id, {})
    return [(mine[p], theirs[p]) for p in review_round.prompt_ids if p in mine and p in theirs]


def judge_round(judge_dir: Path, review_round, answers: list[tuple[str, str]]) -> dict:
    from annotation.models import Prompt
    from models_registry.stats import length_controlled_win_rate, win_rate
    from rlhf.training.policy_eval import load_reward_model, score_rewards

    prompts = Prompt.objects.in_bulk(review_round.prompt_ids)
    conversations = [prompts[p].messages for p in review_round.prompt_ids][: len(answers)]
    judge = load_reward_model(judge_dir)
    mine = score_rewards(judge, conversations, [a for a, _ in answers]).rewards
    theirs = score_rewards(judge, conversations, [b for _, b in answers]).rewards
    wins = sum(1 for (a, b), x, y in zip(answers, mine, theirs, strict=True) if a != b and x > y)
    losses = sum(1 for (a, b), x, y in zip(answers, mine, theirs, strict=True) if a != b and x < y)
    ties = len(answers) - wins - losses
    rate = win_rate(wins, losses, ties)
    # Shorter or better? The same outcomes with the length difference taken out.
    outcomes = [
        0.5 if a == b or x == y else float(x > y)
        for (a, b), x, y in zip(answers, mine, theirs, strict=True)
    ]
    controlled = length_controlled_win_rate(outcomes, [len(a) - len(b) for a, b in answers])
    return {
        "wins": wins,
        "losses": losses,
        "ties": ties,
        "win_rate": round(rate.win_rate, 4),
        "ci": [round(rate.ci_low, 4), round(rate.ci_high, 4)],
        "judge_gain": round(sum(mine) / len(mine) - sum(theirs) / len(theirs), 4),
        "length_controlled": round(controlled.win_rate, 4),
        "length_controlled_ci": [round(controlled.ci_low, 4), round(controlled.ci_high, 4)],
        "length_slope": round(controlled.length_slope, 4),
    }


def dpo_eval(policy_run) -> dict:
    """The DPO run's last held-out evaluation (TRL's implicit reward), where it made one."""
    metrics = (policy_run.metrics or {}).get("validation") or {}
    keys = ("eval_rewards/accuracies", "eval_rewards/margins", "eval_loss")
    found = {k.removeprefix("eval_"): metrics.get(k) for k in keys if metrics.get(k) is not None}
    return {k: round(v, 4) for k, v in found.items()}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=shared_data("hh_harmless_dev.jsonl"))
    parser.add_argument("--judge-data", type=Path, help="train the judge on this file instead")
    parser.add_argument("--eval-prompts", type=Path, help="pin these prompts instead")
    parser.add_argument("--prompts", type=int, default=64, help="evaluation prompts at most")
    parser.add_argument("--test-share", type=float, default=0.25, help="snapshot test share")
    parser.add_argument(
        "--validation-share", type=float, default=0.1, help="snapshot validation share (DPO eval)"
    )
    parser.add_argument("--set", action="append", default=[], metavar="STEP.FIELD=JSON")
    parser.add_argument("--tiny", action="store_true", help="tiny random models (smoke test)")
    parser.add_argument("--database-url", default="", help="a migrated PostgreSQL database")
    args = parser.parse_args(argv)
    for path in (args.data, args.judge_data, args.eval_prompts):
        if path is not None and not path.is_file():
            raise SystemExit(f"{path} not found: set TANDEM_SHARED_DATA or pass the file")
    overrides = parse_sets(args.set)
    started = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix="tandem-loop-effect-"))
    setup_platform(scratch, args.database_url)

    from django.contrib.auth import get_user_model

    from annotation import services as annotation_services
    from annotation.importers import import_file
    from models_registry import review_settings, round_report
    from models_registry.loop import loop_run
    from rlhf.training.data import read_jsonl

    rows = read_jsonl(args.data)
    if args.judge_data:
        round_rows, judge_rows = rows, read_jsonl(args.judge_data)
    else:
        round_rows, judge_rows = halves(rows)
    log(f"{len(round_rows)} pairs for the round, {len(judge_rows)} for the judge")

    user = get_user_model().objects.create_user(f"bench-{os.getpid()}", password="x")
    project = annotation_services.project_create(name="loop effect", created_by=user, overlap=1)
    import_file(
        project=project,
        data="".join(json.dumps(r) + "\n" for r in round_rows).encode(),
        filename="round.jsonl",
        kind="preferences",
        created_by=user,
        annotator_name="hh-crowd",
    )
    review_settings.review_settings_update(project=project, review_fresh_prompts=0)
    if args.eval_prompts:
        review_settings.eval_prompts_pin(
            project=project, conversations=eval_conversations(args.eval_prompts)[: args.prompts]
        )
    project.refresh_from_db()

    outcome = loop_run(
        project=project,
        launched_by=user,
        tiny=args.tiny,
        say=log,
        snapshot_config={"split": {"test": args.test_share, "validation": args.validation_share}},
        overrides=overrides,
        pin_test_prompts=0 if args.eval_prompts else args.prompts,
    )
    review_round = outcome.review_round
    report = round_report.loop_round_report(review_round)
    answers = round_answers(review_round)
    log(f"{len(answers)} prompts answered by both; training the judge")
    encoder = None
    if args.tiny:
        from models_registry.loop import _tiny_models

        encoder = _tiny_models()["encoder"]
    judge = judge_round(
        train_judge(judge_rows, scratch, tiny=args.tiny, encoder=encoder), review_round, answers
    )
    unchanged = sum(1 for a, b in answers if a == b)
    result = {
        "prompts": len(answers),
        "rm_gain": report["reward_gain"],
        "judge_win_rate": judge["win_rate"],
        "judge_win_rate_ci": judge["ci"],
        "kl_to_parent": report["kl_to_parent"],
        "length_ratio": report["length_ratio"],
        "minutes": round((time.perf_counter() - started) / 60, 2),
        "judge": {k: judge[k] for k in ("wins", "losses", "ties", "judge_gain")},
        "judge_win_rate_length_controlled": judge["length_controlled"],
        "judge_win_rate_length_controlled_ci": judge["length_controlled_ci"],
        "judge_length_slope": judge["length_slope"],
        "unchanged_share": round(unchanged / len(answers), 4) if answers else None,
        "rm_accuracy": report["reward_accuracy"],
        "dpo_eval": dpo_eval(outcome.policy_run),
        "dpo_config": {
            k: outcome.policy_run.config.get(k)
            for k in ("learning_rate", "beta", "max_steps", "num_epochs", "lora_r", "lora_alpha")
        },
        "train_pairs": (outcome.snapshot.row_counts or {}).get("preference", {}).get("train"),
        "tiny": args.tiny,
    }
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
