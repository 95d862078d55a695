"""Where benchmarks, tests and demos find the real datasets (never needed by the package)."""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable that points at the folder with the real datasets.
DATA_DIR_ENV = "SCX_DATA_DIR"


def data_dir(default: str | os.PathLike | None = None) -> Path | None:
    """The real-data folder, or ``None`` when it is not available.

    Reads ``$SCX_DATA_DIR``; otherwise ``default`` (benchmarks pass ``../shared/data`` relative
    to the repository). Returns ``None`` when the folder does not exist, so callers can fall back
    to generated data.
    """
    candidate = os.environ.get(DATA_DIR_ENV) or default
    if candidate is None:
        return None
    path = Path(candidate).expanduser()
    return path if path.is_dir() else None
