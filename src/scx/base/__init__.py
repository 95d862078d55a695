"""What the five methods share: the model and module base classes and the tool driver."""

from ._mixing import MIXING_THRESHOLD, MixingCheck
from ._model import INPUT_STATE_KEY, MODALITY_KEY, MultiModalModelBase, to_tensor, train_docs
from ._module import ModuleBase
from ._tool import (
    Outputs,
    cells_disjoint,
    check_key_added,
    clean_params,
    global_rows,
    method_tool,
    remove_outputs,
    write_outputs,
)

__all__ = [
    "INPUT_STATE_KEY",
    "MIXING_THRESHOLD",
    "MODALITY_KEY",
    "MixingCheck",
    "ModuleBase",
    "MultiModalModelBase",
    "Outputs",
    "cells_disjoint",
    "check_key_added",
    "clean_params",
    "global_rows",
    "method_tool",
    "remove_outputs",
    "to_tensor",
    "train_docs",
    "write_outputs",
]
