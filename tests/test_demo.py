"""The demo script (`make demo`) runs end to end on generated data."""

import os
import subprocess
import sys
from pathlib import Path

import mudata
import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "demo.py"


@pytest.mark.timeout(180)
def test_demo_runs_on_synthetic_data(tmp_path):
    out = tmp_path / "out"
    empty_data_dir = tmp_path / "no_data"
    empty_data_dir.mkdir()
    env = {
        **os.environ,
        "SCX_DATA_DIR": str(empty_data_dir),
        "PYTHONWARNINGS": "ignore",
        "MPLBACKEND": "Agg",
    }
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--synthetic", "--epochs", "2", "--out", str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert result.returncode == 0, result.stderr[-3000:]

    h5mu = out / "scjoint_demo.h5mu"
    for path in (h5mu, out / "scjoint_umap.png", out / "scjoint_history.png"):
        assert path.is_file() and path.stat().st_size > 0, path
    assert "ATAC label transfer: accuracy" in result.stderr

    mdata = mudata.read_h5mu(h5mu)
    z = mdata.obsm["X_scjoint"]
    assert z.shape == (mdata.n_obs, 64) and np.isfinite(z).all()
    assert "scjoint_label" in mdata.obs
    labels = mdata["atac"].obs["scjoint_label"]
    assert labels.notna().all()
    assert set(mdata.obs["modality"].astype(str)) == {"rna", "atac"}
    assert "X_umap" in mdata.obsm
