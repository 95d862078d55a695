"""Portal (Zhao et al. 2022): adversarial domain translation for dataset integration."""

from ._model import PORTAL
from ._module import PORTALModule, PortalStage
from ._tool import portal

__all__ = ["PORTAL", "PORTALModule", "PortalStage", "portal"]
