"""Run an original implementation and scx on exactly the same inputs, each in its own process.

The originals are never copied into this repository (several are GPL or unlicensed). Each runs
from a checkout of its public repository (or, for Portal, the ``portal-sc`` wheel) in its own
virtual environment, set up once with ``setup_peers.py``, which records where everything is in
``peers.json`` next to this file (git-ignored). A runner script (``run_<method>.py``) executes
inside that environment: it reads the inputs this harness wrote, applies only the run-time
shims listed in its docstring (library drift since the original was released), trains at the
requested budget and writes its outputs back. scx runs through ``run_scx.py`` the same way, in
a fresh process of scx's own environment, so both sides pay the same process start, and both
time their training steps with the same optimiser hook (``_runner_common.StepTimer``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import sparse

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "peers.json"


@dataclass
class Peer:
    """An original implementation: where to get it and how the harness runs it."""

    name: str
    source: str
    runner: str
    #: packages its environment needs besides torch==2.13.0 (see setup_peers.py)
    requirements: list[str] = field(default_factory=list)
    #: install the checkout itself (``pip install -e``) instead of putting it on sys.path
    install_checkout: bool = False


PEERS = {
    "scjoint": Peer(
        "scjoint",
        "git clone https://github.com/SydneyBioX/scJoint (commit cbbfa5d)",
        "run_scjoint.py",
        ["numpy", "scipy", "scikit-learn", "h5py"],
    ),
    "scdart": Peer(
        "scdart",
        "git clone https://github.com/PeterZZQ/scDART (commit b76bad6)",
        "run_scdart.py",
        [
            "numpy",
            "scipy",
            "scikit-learn",
            "pandas",
            "graphtools>=2",
            "networkx",
            "statsmodels",
            "matplotlib",
        ],
    ),
    "scmodal": Peer(
        "scmodal",
        "git clone https://github.com/gefeiwang/scMODAL (commit 7ef67e2)",
        "run_scmodal.py",
        # pandas < 3: get_imputed_df uses DataFrame.groupby(axis=1), removed in pandas 3
        ["numpy", "scipy", "scikit-learn", "pandas<3", "scanpy", "anndata", "annoy", "umap-learn"],
    ),
    "scpairing": Peer(
        "scpairing",
        "git clone https://github.com/Ding-Group/scPairing (commit 65b73be)",
        "run_scpairing.py",
        [],
        install_checkout=True,
    ),
    "portal": Peer(
        "portal",
        "pip download --no-deps portal-sc==1.0.4 (the wheel; installed with --no-deps)",
        "run_portal.py",
        ["numpy", "scipy", "scikit-learn", "pandas", "scanpy", "anndata", "statsmodels", "tables"],
    ),
}


def config() -> dict:
    """``{peer: {"python": ..., "checkout": ...}}`` from ``peers.json`` (see setup_peers.py)."""
    if not CONFIG.is_file():
        sys.exit(
            f"No {CONFIG.name}: set the originals up first, e.g.\n"
            f"  python {HERE / 'setup_peers.py'} --root /tmp/peers\n"
            "(clones are taken from --checkout-<name> paths or made from the public repositories)."
        )
    return json.loads(CONFIG.read_text())


# ---------------------------------------------------------------------------- inputs
def write_inputs(path: Path, meta: dict, **arrays) -> Path:
    """Write arrays (scipy sparse matrices as CSR parts) and JSON metadata to ``path``."""
    flat = {}
    for name, value in arrays.items():
        if sparse.issparse(value):
            value = sparse.csr_matrix(value, dtype=np.float32)
            flat[f"{name}_data"] = value.data
            flat[f"{name}_indices"] = value.indices
            flat[f"{name}_indptr"] = value.indptr
            flat[f"{name}_shape"] = np.asarray(value.shape)
        else:
            flat[name] = np.asarray(value)
    np.savez(path, meta=np.array(json.dumps(meta)), **flat)
    return path


def read_outputs(path: Path) -> dict:
    """A runner's outputs: arrays plus ``meta`` (dict)."""
    with np.load(path, allow_pickle=False) as archive:
        out = {key: archive[key] for key in archive.files}
    out["meta"] = json.loads(str(out.pop("meta")))
    return out


# ---------------------------------------------------------------------------- runs
def _command(side: str, method: str) -> list[str]:
    if side == "scx":
        return [sys.executable, str(HERE / "run_scx.py"), "--method", method]
    peer = config()[side]
    command = [peer["python"], str(HERE / PEERS[side].runner)]
    if peer.get("checkout") and not PEERS[side].install_checkout:
        command += ["--checkout", peer["checkout"]]
    return command


def run(
    side: str,
    method: str,
    inputs: Path,
    *,
    seed: int = 0,
    threads: int = 1,
    steps: int | None = None,
    options: dict | None = None,
    timeout: float = 6 * 3600,
) -> dict:
    """Run ``side`` (``"scx"`` or a peer name) on ``inputs``; return its outputs and timings.

    ``options`` become ``--key value`` arguments of the runner. The result holds the runner's
    arrays, ``meta`` (its settings and memory), ``step_seconds`` and ``wall_s`` (the whole
    process, start-up included).
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.npz"
        command = [
            *_command(side, method),
            "--inputs", str(inputs), "--out", str(out), "--seed", str(seed),
            "--threads", str(threads),
        ]  # fmt: skip
        if steps is not None:
            command += ["--steps", str(steps)]
        for key, value in (options or {}).items():
            command += [f"--{key.replace('_', '-')}", str(value)]
        env = {
            **os.environ,
            "OMP_NUM_THREADS": str(threads),
            "MKL_NUM_THREADS": str(threads),
            "OPENBLAS_NUM_THREADS": str(threads),
            "PYTHONWARNINGS": "ignore",
            "PYTHONPATH": str(HERE),
        }
        start = time.perf_counter()
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
        wall = time.perf_counter() - start
        if result.returncode != 0:
            raise RuntimeError(
                f"{side} ({method}) failed with exit code {result.returncode}:\n"
                f"{result.stderr[-4000:]}"
            )
        outputs = read_outputs(out)
    outputs["wall_s"] = wall
    return outputs


def median_step(outputs: dict, warmup: int = 5) -> float:
    """Median seconds per training step, the first ``warmup`` steps left out."""
    times = np.asarray(outputs["step_seconds"], dtype=float)
    times = times[warmup:] if times.size > warmup + 2 else times
    return float(np.median(times)) if times.size else float("nan")
