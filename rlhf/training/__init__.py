"""Tandem's training engine: config dataclasses in, a result dataclass out. No Django here.

    from rlhf.training import RewardConfig, run_training
    result = run_training("reward", RewardConfig(base_model=...), "exports/42", "runs/7",
                          progress=on_event, should_stop=fence_lost)

Importing this package is cheap; the trainers (torch, TRL) load when a run starts.
"""

from rlhf.training.config import (
    CONFIG_CLASSES,
    METHOD_TITLES,
    METHODS,
    ConfigError,
    DPOConfig,
    GRPOConfig,
    KTOConfig,
    PPOConfig,
    RewardConfig,
    RLOOConfig,
    SFTConfig,
    TrainingConfig,
    config_from_dict,
    config_schema,
)
from rlhf.training.data import DataError, DatasetSplits
from rlhf.training.progress import ProgressEvent, TrainingStopped

__all__ = [
    "CONFIG_CLASSES",
    "METHODS",
    "METHOD_TITLES",
    "ConfigError",
    "DPOConfig",
    "DataError",
    "DatasetSplits",
    "GRPOConfig",
    "KTOConfig",
    "PPOConfig",
    "ProgressEvent",
    "RLOOConfig",
    "RewardConfig",
    "SFTConfig",
    "TrainingConfig",
    "TrainingStopped",
    "config_from_dict",
    "config_schema",
    "evaluate_reward",
    "run_training",
]


def run_training(*args, **kwargs):
    """See ``rlhf.training.runner.run_training`` (imported on first use: it loads torch)."""
    from rlhf.training.runner import run_training as run

    return run(*args, **kwargs)


def evaluate_reward(*args, **kwargs):
    """See ``rlhf.training.evaluation.evaluate_reward``."""
    from rlhf.training.evaluation import evaluate_reward as evaluate

    return evaluate(*args, **kwargs)
