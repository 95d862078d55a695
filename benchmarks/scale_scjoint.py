"""Scaling benchmark of scJoint training and kNN label transfer on generated multiome data.

For every size N (cells in total: N/2 RNA, N/2 ATAC gene activity over 2,000 genes, sparse CSR
float32 from :func:`scx.datasets.synthetic_multiome`) the script

1. generates the data once in its own subprocess and writes ``<workdir>/multiome_<N>.h5mu``
   (reused when present);
2. trains scJoint stage 1 through the model API in a fresh subprocess
   (``SCJOINT(mdata, reference="rna").train(max_epochs=E, stage3_epochs=0, batch_size=256)``),
   timing the shared input PCA, every epoch and every step (a Lightning callback splits a step
   into data wait, forward, backward and optimiser), and writes the embedding;
3. optionally trains stages 1–3 (``stage3_epochs=E``) in another subprocess, timing stage 2
   (kNN pseudo-labels) and the stage-3 epochs;
4. runs ``scx.tl.transfer_labels`` (k = 30, RNA → ATAC) on that 64-d embedding in a fresh
   subprocess and records which kNN method ``method="auto"`` chose.

Every measurement runs in a fresh process that first reads the ``.h5mu``; it reports the RSS
after loading (baseline), the peak RSS of the measured stage (the kernel's RSS high-water mark is
reset after loading, so the number is not inflated by the reader) and the peak of the whole
process including loading.

Usage::

    python benchmarks/scale_scjoint.py --sizes 10000 100000 1000000 [--workdir /tmp/scx_scale]
        [--epochs 2] [--stage3] [--max-steps-per-epoch 4000] [--threads 1] [--profile]

With ``--max-steps-per-epoch`` a size whose full epoch (⌊ATAC cells / 256⌋ steps) is longer is
trained for that many steps per epoch instead and the full-epoch time is extrapolated from the
steady-state time per step (marked ``*`` in the table). ``--threads`` pins torch/BLAS/numba
threads in the workers (on a shared machine one thread per process gives far steadier timings
than oversubscribed OpenMP pools); ``--profile`` writes a cProfile of each training worker to
the workdir.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import math
import os
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

N_GENES = 2000
N_TYPES = 10
RNA_DEPTH = 120.0  # ≈ 5.0 % non-zeros over 2,000 genes
ATAC_DEPTH = 50.0  # ≈ 2.2 % non-zeros
BATCH_SIZE = 256
N_NEIGHBORS = 30
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")

log = logging.getLogger("scale_scjoint")


# ---------------------------------------------------------------------------------- memory
def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def rss_mb() -> float:
    """Current resident set size."""
    return _status_kb("VmRSS") / 1024


def peak_rss_mb() -> float:
    """``ru_maxrss`` (the RSS high-water mark) in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark to the current RSS (Linux ≥ 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return False
    return True


def _quiet() -> None:
    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "scvi", "pynndescent"):
        logging.getLogger(name).setLevel(logging.ERROR)


def h5mu_path(workdir: Path, size: int) -> Path:
    return workdir / f"multiome_{size}.h5mu"


def latent_path(workdir: Path, size: int) -> Path:
    return workdir / f"latent_{size}.npy"


# ---------------------------------------------------------------------------------- workers
def _load(workdir: Path, size: int) -> tuple[object, dict]:
    """Read the generated MuData and describe its sparse input and the memory after loading."""
    import mudata
    import torch  # noqa: F401  (libraries count towards the baseline, not the stage)

    import scx.model  # noqa: F401

    libs_mb = rss_mb()
    t0 = time.perf_counter()
    mdata = mudata.read_h5mu(h5mu_path(workdir, size))
    load_s = time.perf_counter() - t0
    input_bytes, nnz = 0, 0
    for m in ("rna", "atac"):
        X = mdata.mod[m].X
        input_bytes += X.data.nbytes + X.indices.nbytes + X.indptr.nbytes
        nnz += X.nnz
    gc.collect()
    info = {
        "n_cells": int(mdata.n_obs),
        "n_rna": int(mdata.mod["rna"].n_obs),
        "n_atac": int(mdata.mod["atac"].n_obs),
        "nnz": int(nnz),
        "density_rna": mdata.mod["rna"].X.nnz / math.prod(mdata.mod["rna"].shape),
        "density_atac": mdata.mod["atac"].X.nnz / math.prod(mdata.mod["atac"].shape),
        "input_mb": input_bytes / 2**20,
        "load_s": load_s,
        "libs_rss_mb": libs_mb,
        "baseline_rss_mb": rss_mb(),
        "load_peak_rss_mb": peak_rss_mb(),
    }
    info["peak_reset"] = reset_peak_rss()
    return mdata, info


def _finish(info: dict) -> dict:
    info["stage_peak_rss_mb"] = peak_rss_mb()
    info["process_peak_rss_mb"] = max(info["stage_peak_rss_mb"], info["load_peak_rss_mb"])
    return info


def worker_generate(workdir: Path, size: int) -> dict:
    import scx

    t0 = time.perf_counter()
    mdata = scx.datasets.synthetic_multiome(
        n_rna=size // 2,
        n_atac=size - size // 2,
        n_genes=N_GENES,
        n_types=N_TYPES,
        rna_depth=RNA_DEPTH,
        atac_depth=ATAC_DEPTH,
        seed=0,
    )
    gen_s = time.perf_counter() - t0
    gen_peak = peak_rss_mb()
    t0 = time.perf_counter()
    tmp = h5mu_path(workdir, size).with_suffix(".tmp.h5mu")
    mdata.write(tmp)
    tmp.rename(h5mu_path(workdir, size))
    return {
        "generate_s": gen_s,
        "generate_peak_rss_mb": gen_peak,
        "write_s": time.perf_counter() - t0,
        "file_mb": h5mu_path(workdir, size).stat().st_size / 2**20,
    }


def _step_timer():
    """A Lightning callback that timestamps epochs and the phases of every training step."""
    from lightning.pytorch.callbacks import Callback

    class StepTimer(Callback):
        def __init__(self):
            self.fits: list[dict] = []

        def on_fit_start(self, trainer, pl_module):
            self.fits.append({"start": time.perf_counter(), "epochs": []})

        def on_fit_end(self, trainer, pl_module):
            self.fits[-1]["end"] = time.perf_counter()

        def on_train_epoch_start(self, trainer, pl_module):
            now = time.perf_counter()
            self._epoch = dict.fromkeys(("wait", "forward", "backward", "optimizer"), 0.0)
            self._epoch.update(start=now, steps=0)
            self._last = now

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            now = time.perf_counter()
            self._epoch["wait"] += now - self._last
            self._last = now

        def on_before_backward(self, trainer, pl_module, loss):
            now = time.perf_counter()
            self._epoch["forward"] += now - self._last
            self._last = now

        def on_after_backward(self, trainer, pl_module):
            now = time.perf_counter()
            self._epoch["backward"] += now - self._last
            self._last = now

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            now = time.perf_counter()
            self._epoch["optimizer"] += now - self._last
            self._epoch["steps"] += 1
            self._last = now

        def on_train_epoch_end(self, trainer, pl_module):
            self._epoch["end"] = time.perf_counter()
            self._epoch["seconds"] = self._epoch["end"] - self._epoch["start"]
            self.fits[-1]["epochs"].append(self._epoch)

    return StepTimer()


def _steady(epochs: list[dict], full_steps: int) -> dict:
    """Per-epoch and per-step figures from the epochs after the first (warm-up) one."""
    use = epochs[1:] if len(epochs) > 1 else epochs
    steps = sum(e["steps"] for e in use)
    seconds = sum(e["seconds"] for e in use)
    out = {
        "n_epochs": len(epochs),
        "steady_epochs": len(use),
        "first_epoch_s": epochs[0]["seconds"],
        "steps_per_epoch_run": epochs[0]["steps"],
        "steps_per_epoch_full": full_steps,
        "ms_per_step": 1e3 * seconds / max(steps, 1),
    }
    for phase in ("wait", "forward", "backward", "optimizer"):
        out[f"ms_{phase}"] = 1e3 * sum(e[phase] for e in use) / max(steps, 1)
    out["epoch_s"] = out["ms_per_step"] * full_steps / 1e3
    out["extrapolated"] = epochs[0]["steps"] != full_steps
    return out


def worker_train(
    workdir: Path,
    size: int,
    epochs: int,
    stage3: bool,
    max_steps: int | None,
    profile: bool,
) -> dict:
    mdata, info = _load(workdir, size)
    import numpy as np
    import torch

    from scx.model import SCJOINT

    t_total = time.perf_counter()
    SCJOINT.setup_mudata(mdata, modalities=["rna", "atac"], labels_key={"rna": "cell_type"})
    model = SCJOINT(mdata, reference="rna")
    info["setup_s"] = time.perf_counter() - t_total
    info["rss_after_setup_mb"] = rss_mb()

    # time the one-off shared input PCA that `train` fits first
    fit_projection = model._fit_input_projection
    pca: dict = {}

    def timed_projection(seed):
        t0 = time.perf_counter()
        fit_projection(seed)
        pca["s"] = time.perf_counter() - t0
        pca["rss_after_mb"] = rss_mb()
        pca["peak_mb"] = peak_rss_mb()

    model._fit_input_projection = timed_projection
    full_steps = max(1, info["n_atac"] // BATCH_SIZE)
    steps = full_steps if max_steps is None else min(full_steps, max_steps)
    timer = _step_timer()
    kwargs = {
        "max_epochs": epochs,
        "stage3_epochs": epochs if stage3 else 0,
        "batch_size": BATCH_SIZE,
        "enable_progress_bar": False,
        "callbacks": [timer],
        "default_root_dir": str(workdir),
        "enable_model_summary": False,
    }
    if steps != full_steps:
        kwargs["steps_per_epoch"] = steps
    if os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    info["torch_threads"] = torch.get_num_threads()
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    t0 = time.perf_counter()
    model.train(**kwargs)
    info["train_s"] = time.perf_counter() - t0
    if profiler is not None:
        profiler.disable()
        stats_path = workdir / f"profile_{size}{'_stage3' if stage3 else ''}.pstats"
        profiler.dump_stats(stats_path)
        info["profile"] = str(stats_path)
    info["pca_fit_s"] = pca.get("s", float("nan"))
    info["pca_rss_after_mb"] = pca.get("rss_after_mb", float("nan"))
    info["pca_peak_mb"] = pca.get("peak_mb", float("nan"))
    info["stage1"] = _steady(timer.fits[0]["epochs"], full_steps)
    info["stage1"]["fit_overhead_s"] = (
        timer.fits[0]["end"]
        - timer.fits[0]["start"]
        - sum(e["seconds"] for e in timer.fits[0]["epochs"])
    )
    if stage3:
        info["stage2_s"] = timer.fits[1]["start"] - timer.fits[0]["end"]
        info["stage3"] = _steady(timer.fits[1]["epochs"], full_steps)
    info["rss_after_train_mb"] = rss_mb()
    t0 = time.perf_counter()
    latent = model.get_latent_representation()
    info["latent_s"] = time.perf_counter() - t0
    if not stage3:
        np.save(latent_path(workdir, size), np.vstack([latent["rna"], latent["atac"]]))
    return _finish(info)


def _planted_embedding(mdata, dim: int = 64, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(N_TYPES, dim)).astype(np.float32)
    parts = []
    for m in ("rna", "atac"):
        codes = mdata.mod[m].obs["cell_type"].cat.codes.to_numpy()
        parts.append(centres[codes] + rng.normal(scale=0.7, size=(codes.size, dim)))
    return np.vstack(parts).astype(np.float32)


def worker_transfer(workdir: Path, size: int) -> dict:
    mdata, info = _load(workdir, size)
    import numpy as np

    import scx
    import scx._neighbors as nb

    path = latent_path(workdir, size)
    if path.exists():
        stacked = np.load(path)
        info["embedding"] = "scJoint latent"
    else:
        stacked = _planted_embedding(mdata)
        info["embedding"] = "planted random"
    # rows of mdata.obs in modality order (rna rows first in `stacked`)
    z = np.empty((mdata.n_obs, stacked.shape[1]), dtype=np.float32)
    offset = 0
    for m in ("rna", "atac"):
        obsmap = np.asarray(mdata.obsmap[m]).ravel()
        rows = np.flatnonzero(obsmap > 0)
        z[rows] = stacked[offset + obsmap[rows] - 1]
        offset += mdata.mod[m].n_obs
    mdata.obsm["X_scjoint"] = z
    del stacked

    chosen: list[str] = []
    for name in ("_knn_exact", "_knn_pynndescent"):
        original = getattr(nb, name)

        def wrapped(*args, _original=original, _name=name, **kwargs):
            chosen.append(_name.removeprefix("_knn_"))
            return _original(*args, **kwargs)

        setattr(nb, name, wrapped)
    t0 = time.perf_counter()
    scx.tl.transfer_labels(
        mdata,
        "cell_type",
        use_rep="X_scjoint",
        reference="rna",
        query="atac",
        n_neighbors=N_NEIGHBORS,
    )
    info["transfer_s"] = time.perf_counter() - t0
    info["knn_method"] = "+".join(chosen)
    truth = mdata.mod["atac"].obs["cell_type"].astype(str).to_numpy()
    predicted = mdata.mod["atac"].obs["transfer_label"].astype(str).to_numpy()
    info["transfer_accuracy"] = float((truth == predicted).mean())
    return _finish(info)


# ---------------------------------------------------------------------------------- driver
def run_worker(args: argparse.Namespace, stage: str, size: int, extra: list[str]) -> dict | None:
    result = Path(args.workdir) / f"result_{stage}_{size}.json"
    result.unlink(missing_ok=True)
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--worker",
        stage,
        "--workdir",
        str(args.workdir),
        "--sizes",
        str(size),
        "--epochs",
        str(args.epochs),
        "--result",
        str(result),
        *extra,
    ]
    env = dict(os.environ)
    if args.threads:
        for var in THREAD_VARS:
            env[var] = str(args.threads)
    log.info("[%s %d] start (load average %.1f)", stage, size, os.getloadavg()[0])
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=args.workdir, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0 or not result.exists():
        log.error("[%s %d] failed (rc %d):\n%s", stage, size, proc.returncode, proc.stderr[-4000:])
        return None
    out = json.loads(result.read_text())
    out["wall_s"] = wall
    out["load_avg_after"] = os.getloadavg()[0]
    log.info("[%s %d] done in %.1f s: %s", stage, size, wall, _summary(out))
    return out


def _summary(out: dict) -> str:
    keys = (
        "generate_s",
        "generate_peak_rss_mb",
        "file_mb",
        "baseline_rss_mb",
        "stage_peak_rss_mb",
        "pca_fit_s",
        "transfer_s",
        "knn_method",
    )
    parts = [
        f"{k}={out[k]:.3g}" if isinstance(out[k], float) else f"{k}={out[k]}"
        for k in keys
        if k in out
    ]
    for stage in ("stage1", "stage3"):
        if stage in out:
            s = out[stage]
            parts.append(
                f"{stage}: epoch {s['epoch_s']:.2f} s, {s['ms_per_step']:.2f} ms/step "
                f"(wait {s['ms_wait']:.2f}, fwd {s['ms_forward']:.2f}, bwd {s['ms_backward']:.2f}, "
                f"opt {s['ms_optimizer']:.2f})"
            )
    return "; ".join(parts)


def _fmt(value, spec: str = ".1f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    try:
        return format(value, spec)
    except (TypeError, ValueError):
        return str(value)


def print_tables(rows: list[dict], epochs: int) -> None:
    header = (
        f"{'size':>8} {'n_cells':>9} {'nnz':>11} {'input MB':>9} {'base MB':>8} {'peak MB':>8} "
        f"{'pk/in':>6} {'(pk-b)/in':>9} {'epoch s':>8} {'steps/ep':>8} {'ms/step':>8} "
        f"{'PCA s':>7} {'transfer s':>10} {'kNN':>11}"
    )
    print(f"\nscJoint scaling (stage 1, batch 256, 2,000 genes, {epochs} epochs; CPU)")
    print("peak MB: max over the training and transfer processes of the RSS high-water mark")
    print("after loading; base MB: RSS after reading the .h5mu (training process)")
    print(header)
    print("-" * len(header))
    for r in rows:
        tr, tf = r.get("train") or {}, r.get("transfer") or {}
        s1 = tr.get("stage1") or {}
        base = tr.get("baseline_rss_mb", tf.get("baseline_rss_mb"))
        peak = max(tr.get("stage_peak_rss_mb", 0), tf.get("stage_peak_rss_mb", 0)) or None
        inp = tr.get("input_mb", tf.get("input_mb"))
        epoch = s1.get("epoch_s")
        print(
            f"{r['size']:>8} {tr.get('n_cells', tf.get('n_cells', 0)):>9} "
            f"{tr.get('nnz', tf.get('nnz', 0)):>11} {_fmt(inp):>9} {_fmt(base):>8} "
            f"{_fmt(peak):>8} {_fmt(peak / inp if peak and inp else None, '.2f'):>6} "
            f"{_fmt((peak - base) / inp if peak and inp and base else None, '.2f'):>9} "
            f"{_fmt(epoch, '.2f') + ('*' if s1.get('extrapolated') else ''):>8} "
            f"{s1.get('steps_per_epoch_full', '-'):>8} {_fmt(s1.get('ms_per_step'), '.2f'):>8} "
            f"{_fmt(tr.get('pca_fit_s'), '.2f'):>7} {_fmt(tf.get('transfer_s'), '.2f'):>10} "
            f"{tf.get('knn_method', '-'):>11}"
        )
    if any((r.get("train") or {}).get("stage1", {}).get("extrapolated") for r in rows):
        print("* epoch time extrapolated from a fixed number of steps (see steps run below)")

    print("\nDetails")
    header2 = (
        f"{'size':>8} {'gen s':>6} {'gen pk MB':>9} {'libs MB':>7} {'load s':>6} {'load pk':>8} "
        f"{'train pk':>8} {'PCA pk':>7} {'xfer base':>9} {'xfer pk':>8} {'steps run':>9} "
        f"{'1st ep s':>8} {'wait':>6} {'fwd':>6} {'bwd':>6} {'opt':>6} {'latent s':>8} "
        f"{'acc':>5} {'emb':>8} {'thr':>3} {'load':>5}"
    )
    print("(ms per step: wait = data loading + loop between steps; fwd = training_step incl.")
    print(
        " loss and log_dict; opt = optimiser update; libs MB = RSS after importing torch/scvi/scx;"
    )
    print(" PCA pk = RSS high-water mark right after the input PCA; thr = torch threads;")
    print(" load = 1-min load average after training; > cores means the timings are contended)")
    print(header2)
    print("-" * len(header2))
    for r in rows:
        g, tr, tf = r.get("generate") or {}, r.get("train") or {}, r.get("transfer") or {}
        s1 = tr.get("stage1") or {}
        emb = tf.get("embedding", "-")
        cells = [
            (r["size"], 8, "d"),
            (g.get("generate_s"), 6, ".1f"),
            (g.get("generate_peak_rss_mb"), 9, ".0f"),
            (tr.get("libs_rss_mb"), 7, ".0f"),
            (tr.get("load_s"), 6, ".2f"),
            (tr.get("load_peak_rss_mb"), 8, ".0f"),
            (tr.get("stage_peak_rss_mb"), 8, ".0f"),
            (tr.get("pca_peak_mb"), 7, ".0f"),
            (tf.get("baseline_rss_mb"), 9, ".0f"),
            (tf.get("stage_peak_rss_mb"), 8, ".0f"),
            (s1.get("steps_per_epoch_run"), 9, "d"),
            (s1.get("first_epoch_s"), 8, ".2f"),
            (s1.get("ms_wait"), 6, ".2f"),
            (s1.get("ms_forward"), 6, ".2f"),
            (s1.get("ms_backward"), 6, ".2f"),
            (s1.get("ms_optimizer"), 6, ".2f"),
            (tr.get("latent_s"), 8, ".2f"),
            (tf.get("transfer_accuracy"), 5, ".2f"),
            ("scJoint" if emb == "scJoint latent" else emb, 8, "s"),
            (tr.get("torch_threads"), 3, "d"),
            (tr.get("load_avg_after"), 5, ".1f"),
        ]
        print(" ".join(f"{_fmt(value, spec):>{width}}" for value, width, spec in cells))

    stage3_rows = [r for r in rows if r.get("stage3")]
    if stage3_rows:
        print("\nStages 1-3 (stage3_epochs = max_epochs)")
        print(f"{'size':>8} {'stage2 s':>8} {'s3 epoch s':>10} {'s3 ms/step':>10} {'peak MB':>8}")
        for r in stage3_rows:
            s = r["stage3"]
            s3 = s.get("stage3") or {}
            print(
                f"{r['size']:>8} {_fmt(s.get('stage2_s'), '.2f'):>8} "
                f"{_fmt(s3.get('epoch_s'), '.2f') + ('*' if s3.get('extrapolated') else ''):>10} "
                f"{_fmt(s3.get('ms_per_step'), '.2f'):>10} "
                f"{_fmt(s.get('stage_peak_rss_mb'), '.0f'):>8}"
            )

    timed = [
        (r["size"], (r.get("train") or {}).get("stage1", {}).get("epoch_s"))
        for r in rows
        if (r.get("train") or {}).get("stage1")
    ]
    if len(timed) >= 2:
        per_cell = ", ".join(f"{n}: {1e6 * t / n:.1f} µs/cell" for n, t in timed)
        (n0, t0), (n1, t1) = timed[0], timed[-1]
        exponent = math.log(t1 / t0) / math.log(n1 / n0)
        verdict = (
            "about linear"
            if 0.85 <= exponent <= 1.15
            else ("super-linear" if exponent > 1.15 else "sub-linear")
        )
        print(
            f"\nEpoch time per cell: {per_cell}; {n0}→{n1} cells ×{n1 / n0:.0f}, epoch time "
            f"×{t1 / t0:.1f} (scaling exponent {exponent:.2f}): {verdict}."
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--workdir", default="/tmp/scx_scale")
    parser.add_argument("--epochs", type=int, default=2, help="stage-1 epochs (≥ 2)")
    parser.add_argument(
        "--stage3", action="store_true", help="also time stages 2 and 3 in another process"
    )
    parser.add_argument(
        "--max-steps-per-epoch",
        type=int,
        default=None,
        help="cap steps per epoch and extrapolate the full-epoch time",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads of torch/BLAS/numba in the workers (default: the libraries' own choice)",
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the training worker")
    parser.add_argument("--worker", choices=["generate", "train", "stage3", "transfer"])
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.workdir = str(Path(args.workdir).resolve())
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    workdir = Path(args.workdir)

    if args.worker:
        _quiet()
        size = args.sizes[0]
        if args.worker == "generate":
            out = worker_generate(workdir, size)
        elif args.worker in ("train", "stage3"):
            out = worker_train(
                workdir,
                size,
                args.epochs,
                stage3=args.worker == "stage3",
                max_steps=args.max_steps_per_epoch,
                profile=args.profile,
            )
        else:
            out = worker_transfer(workdir, size)
        Path(args.result).write_text(json.dumps(out, indent=1))
        return

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if args.epochs < 2:
        parser.error("--epochs must be ≥ 2 so that one epoch after the warm-up is timed")
    extra = []
    if args.max_steps_per_epoch:
        extra += ["--max-steps-per-epoch", str(args.max_steps_per_epoch)]
    if args.profile:
        extra.append("--profile")
    rows = []
    t_start = time.perf_counter()
    log.info(
        "%d CPU cores, load average %.1f; worker threads: %s",
        os.cpu_count(),
        os.getloadavg()[0],
        args.threads or "library default",
    )
    for size in args.sizes:
        row: dict = {"size": size}
        if h5mu_path(workdir, size).exists():
            log.info("[generate %d] reusing %s", size, h5mu_path(workdir, size))
            gen_json = workdir / f"result_generate_{size}.json"
            row["generate"] = json.loads(gen_json.read_text()) if gen_json.exists() else None
        else:
            row["generate"] = run_worker(args, "generate", size, [])
            if row["generate"] is None:
                rows.append(row)
                continue
        latent_path(workdir, size).unlink(missing_ok=True)
        row["train"] = run_worker(args, "train", size, extra)
        row["transfer"] = run_worker(args, "transfer", size, [])
        if args.stage3:
            row["stage3"] = run_worker(args, "stage3", size, extra)
        rows.append(row)
        (workdir / "results.json").write_text(json.dumps(rows, indent=1))
    print_tables(rows, args.epochs)
    print(f"\nTotal wall time {time.perf_counter() - t_start:.0f} s; results in {workdir}")


if __name__ == "__main__":
    main()
