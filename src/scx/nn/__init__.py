"""Neural-network building blocks shared by the methods."""

from ._blocks import MLP, make_activation

__all__ = ["MLP", "make_activation"]
