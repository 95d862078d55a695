"""Portal (Zhao et al. 2022): adversarial domain translation for dataset integration."""

from ._model import PORTAL
from ._module import PORTALModule, PortalStage
from ._tool import portal

#: The original Portal's training where scx departs from it by default (pass as
#: ``scx.tl.portal(adata, **REFERENCE_SETTINGS)``): the last step's weights instead of their
#: moving average.
REFERENCE_SETTINGS = {"ema_decay": None}

__all__ = ["PORTAL", "REFERENCE_SETTINGS", "PORTALModule", "PortalStage", "portal"]
