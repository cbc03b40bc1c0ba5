"""One optimisation step of each TRL trainer on a tiny random model (CPU, seconds)."""

from pathlib import Path

from rlhf.training.base_models import build_tiny_causal_lm

COMMON = {
    "max_steps": 1,
    "per_device_train_batch_size": 2,
    "gradient_accumulation_steps": 1,
    "learning_rate": 1e-3,
    "bf16": False,
    "fp16": False,
    "gradient_checkpointing": False,
    "report_to": [],
    "use_cpu": True,
    "save_strategy": "no",
    "logging_steps": 1,
    "dataloader_num_workers": 0,
}


def _tiny(tmp: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = build_tiny_causal_lm(tmp / "model")
    return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def _loss(trainer) -> float:
    result = trainer.train()
    return float(result.training_loss)


def reward_step(dataset, tmp: Path) -> float:
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    path = build_tiny_causal_lm(tmp / "model")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    # RewardTrainer needs a number for every margin: null (no strength) means no margin.
    dataset = dataset.map(lambda row: {"margin": row["margin"] or 0.0})
    args = RewardConfig(output_dir=str(tmp / "out"), max_length=256, **COMMON)
    trainer = RewardTrainer(
        model=model, args=args, train_dataset=dataset, processing_class=tokenizer
    )
    return _loss(trainer)


def dpo_step(dataset, tmp: Path) -> float:
    from trl import DPOConfig, DPOTrainer

    model, tokenizer = _tiny(tmp)
    args = DPOConfig(output_dir=str(tmp / "out"), max_length=256, **COMMON)
    trainer = DPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    return _loss(trainer)


def sft_step(dataset, tmp: Path) -> float:
    from trl import SFTConfig, SFTTrainer

    model, tokenizer = _tiny(tmp)
    args = SFTConfig(output_dir=str(tmp / "out"), max_length=256, **COMMON)
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    return _loss(trainer)


def kto_step(dataset, tmp: Path) -> float:
    from trl import KTOConfig, KTOTrainer

    model, tokenizer = _tiny(tmp)
    args = KTOConfig(output_dir=str(tmp / "out"), max_length=256, **COMMON)
    trainer = KTOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    return _loss(trainer)


def grpo_step(dataset, tmp: Path) -> float:
    from trl import GRPOConfig, GRPOTrainer

    model, tokenizer = _tiny(tmp)

    def brevity(completions, **kwargs):
        return [-float(len(c[0]["content"])) for c in completions]

    args = GRPOConfig(
        output_dir=str(tmp / "out"),
        num_generations=2,
        max_completion_length=8,
        **{**COMMON, "per_device_train_batch_size": 2},
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=brevity,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    return _loss(trainer)
