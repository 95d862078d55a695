"""Neural-network building blocks shared by the methods."""

from ._blocks import MLP, InputMajorLinear, make_activation

__all__ = ["MLP", "InputMajorLinear", "make_activation"]
