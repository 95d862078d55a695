"""Neural-network building blocks shared by the methods."""

from ._blocks import MLP, InputMajorLinear, apply_jointly, make_activation

__all__ = ["MLP", "InputMajorLinear", "apply_jointly", "make_activation"]
