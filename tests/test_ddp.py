import os
import subprocess
import sys
from pathlib import Path

import mudata
import numpy as np
import pytest

SCRIPT = Path(__file__).with_name("_ddp_scjoint.py")


@pytest.mark.timeout(300)
def test_scjoint_trains_with_ddp_on_two_cpu_processes(tmp_path):
    out = tmp_path / "ddp.h5mu"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    mdata = mudata.read_h5mu(out)
    assert int(mdata.uns["world_size"]) == 2
    z = mdata.obsm["X_scjoint"]
    assert z.shape == (800, 64) and np.isfinite(z).all()
    atac = mdata["atac"].obs
    accuracy = (atac["scjoint_label"].astype(str) == atac["truth"].astype(str)).mean()
    assert accuracy > 0.8
