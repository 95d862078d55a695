"""Training: the shared plans, the fit loop with its progress bar, epoch-level logging."""

from ._fit import (
    TRAINER_OPTIONS,
    ProgressBar,
    check_devices,
    check_trainer_kwargs,
    fit,
    native_bfloat16,
    training_length,
    unknown_name_message,
)
from ._logging import EpochMeanLoggingMixin
from ._plans import (
    AdversarialModule,
    AdversarialTrainingPlan,
    LossTrainingPlan,
    TrainableModule,
    adam,
    mixed_precision,
)

__all__ = [
    "TRAINER_OPTIONS",
    "AdversarialModule",
    "AdversarialTrainingPlan",
    "EpochMeanLoggingMixin",
    "LossTrainingPlan",
    "ProgressBar",
    "TrainableModule",
    "adam",
    "check_devices",
    "check_trainer_kwargs",
    "fit",
    "mixed_precision",
    "native_bfloat16",
    "training_length",
    "unknown_name_message",
]
