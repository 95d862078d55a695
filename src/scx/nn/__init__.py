"""Neural-network building blocks shared by the methods."""

from ._blocks import MLP, InputMajorLinear, apply_jointly, make_activation
from ._functional import clamped_exp

__all__ = ["MLP", "InputMajorLinear", "apply_jointly", "clamped_exp", "make_activation"]
