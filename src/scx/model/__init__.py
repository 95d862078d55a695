"""scvi-tools model classes of every method."""

from scx.base import MultiModalModelBase
from scx.portal import PORTAL
from scx.scdart import SCDART
from scx.scjoint import SCJOINT
from scx.scmodal import SCMODAL
from scx.scpairing import SCPAIRING

__all__ = ["PORTAL", "SCDART", "SCJOINT", "SCMODAL", "SCPAIRING", "MultiModalModelBase"]
