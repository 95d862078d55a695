"""Training plans and helpers shared by the methods."""

from ._adversarial import AdversarialModule, AdversarialTrainingPlan
from ._logging import EpochMeanLoggingMixin

__all__ = ["AdversarialModule", "AdversarialTrainingPlan", "EpochMeanLoggingMixin"]
