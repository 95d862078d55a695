"""Every method trains under Lightning DDP on two CPU processes and still learns the structure."""

import os
import subprocess
import sys
from pathlib import Path

import mudata
import numpy as np
import pytest

import scx
from scx._neighbors import knn

SCRIPT = Path(__file__).with_name("_ddp_run.py")


def _transfer(reference, labels, query) -> np.ndarray:
    predicted, _, _ = scx._neighbors.knn_transfer(reference, labels, query, n_neighbors=15)
    return predicted


def score(tool: str, data: mudata.MuData) -> tuple[float, float]:
    """(score, threshold): the learned structure each method must show."""
    if tool == "scjoint":
        atac = data["atac"].obs
        return float((atac["scjoint_label"].astype(str) == atac["truth"]).mean()), 0.8
    if tool == "portal":
        adata = data["all"]
        z, types = adata.obsm["X_portal"], adata.obs["cell_type"].astype(str).to_numpy()
        batches = adata.obs["batch"].astype(str).to_numpy()
        index, _ = knn(z, z, 21)
        mixing = (batches[index[:, 1:]] != batches[:, None]).mean()
        purity = (types[index[:, 1:]] == types[:, None]).mean()
        return float(min(mixing / 0.5, purity)), 0.6
    if tool == "scmodal":
        rna, prot = data["rna"], data["prot"]
        predicted = _transfer(rna.obsm["X_scmodal"], rna.obs["cell_type"], prot.obsm["X_scmodal"])
        return float((predicted == prot.obs["cell_type"].astype(str).to_numpy()).mean()), 0.8
    if tool == "scpairing":
        z1, z2 = data["rna"].obsm["X_scpairing"], data["atac"].obsm["X_scpairing"]
        return 1 - scx.metrics.foscttm(z1, z2), 0.8
    z1, z2 = data["rna"].obsm["X_scdart"], data["atac"].obsm["X_scdart"]
    return 1 - scx.metrics.foscttm(z1, z2), 0.7


@pytest.mark.timeout(300)
@pytest.mark.parametrize("tool", ["scjoint", "portal", "scmodal", "scpairing", "scdart"])
def test_trains_with_ddp_on_two_cpu_processes(tool, tmp_path):
    out = tmp_path / "ddp.h5mu"
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), tool, str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data = mudata.read_h5mu(out)
    assert int(data.uns["world_size"]) == 2
    for adata in data.mod.values():
        for key, value in adata.obsm.items():
            if key.startswith("X_"):
                assert np.isfinite(np.asarray(value)).all(), key
    value, threshold = score(tool, data)
    assert value > threshold, (tool, value)
