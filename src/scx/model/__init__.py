"""scvi-tools model classes of every method."""

from scx.scjoint import SCJOINT

from ._base import MultiModalModelBase

__all__ = ["SCJOINT", "MultiModalModelBase"]
