"""Set up the original implementations for the peer harness, one virtual environment each.

For every original: a virtual environment under ``--root`` with ``torch==2.13.0`` (the same
build as scx's) and the original's own dependencies, and the path of a checkout of its public
repository. What was set up is recorded in ``benchmarks/peers/peers.json`` (git-ignored), which
``harness.py`` reads.

Checkouts are never copied into scx. Pass existing ones with ``--checkout NAME=PATH``, or let
the script clone them into ``--root`` (needs network access to GitHub)::

    python benchmarks/peers/setup_peers.py --root ~/scx-peers
    python benchmarks/peers/setup_peers.py --root /tmp/peers \\
        --checkout scjoint=/tmp/peers/scJoint --checkout scdart=/tmp/peers/scDART \\
        --checkout scmodal=/tmp/peers/scMODAL --checkout scpairing=/tmp/peers/scPairing

Portal's original is the ``portal-sc`` wheel from PyPI, installed with ``--no-deps`` (it pins
torch 1.8.1 and scanpy 1.7.2, which do not install on current Python); its real dependencies are
installed unpinned.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from harness import CONFIG, PEERS

REPOSITORIES = {
    "scjoint": "https://github.com/SydneyBioX/scJoint",
    "scdart": "https://github.com/PeterZZQ/scDART",
    "scmodal": "https://github.com/gefeiwang/scMODAL",
    "scpairing": "https://github.com/Ding-Group/scPairing",
}


def pip(python: Path, *args: str) -> None:
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", *args], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="folder for venvs and clones")
    parser.add_argument(
        "--checkout", action="append", default=[], help="NAME=PATH of an existing checkout"
    )
    parser.add_argument("--only", nargs="*", default=list(PEERS), choices=list(PEERS))
    args = parser.parse_args()
    checkouts = dict(item.split("=", 1) for item in args.checkout)
    args.root.mkdir(parents=True, exist_ok=True)
    recorded = json.loads(CONFIG.read_text()) if CONFIG.is_file() else {}
    for name in args.only:
        peer = PEERS[name]
        venv = args.root / f"venv-{name}"
        python = venv / "bin" / "python"
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip(python, "torch==2.13.0")
        if peer.requirements:
            pip(python, *peer.requirements)
        checkout = None
        if name == "portal":
            wheels = args.root / "portal_wheel"
            subprocess.run(
                [str(python), "-m", "pip", "download", "--quiet", "--no-deps",
                 "portal-sc==1.0.4", "-d", str(wheels)],
                check=True,
            )  # fmt: skip
            pip(python, "--no-deps", *map(str, wheels.glob("portal_sc-*.whl")))
        else:
            checkout = Path(checkouts.get(name) or args.root / name).resolve()
            if not checkout.exists():
                subprocess.run(["git", "clone", REPOSITORIES[name], str(checkout)], check=True)
            if peer.install_checkout:
                pip(python, "-e", str(checkout))
        recorded[name] = {"python": str(python), "checkout": str(checkout) if checkout else None}
        print(f"{name}: {python} ({peer.source})")
    CONFIG.write_text(json.dumps(recorded, indent=2) + "\n")
    print(f"wrote {CONFIG}")


if __name__ == "__main__":
    main()
