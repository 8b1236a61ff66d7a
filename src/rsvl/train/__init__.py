"""Training on Ray Train: pluggable objectives, trainable subsets, resumable checkpoints, MLflow, progressive stages."""

from rsvl.train.fit import FitResult, fit, new_run_name
from rsvl.train.objectives import Objective, build_objective, objective_names, register_objective
from rsvl.train import peft_tuning  # noqa: F401  (registers the lora and ia3 adapters; peft is imported on use)
from rsvl.train import iebaker_objective  # noqa: F401  (registers the iebaker objective)
from rsvl.train import lrsclip_objective  # noqa: F401  (registers the lrsclip objective)
from rsvl.train.progressive import train_plan

__all__ = ["FitResult", "Objective", "build_objective", "fit", "new_run_name", "objective_names", "register_objective",
           "train_plan"]
