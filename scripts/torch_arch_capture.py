#!/usr/bin/env python3
"""Capture what a torch wheel was built for: its CUDA version and the GPU architectures it has kernels for.

Installs ``torch==<version>`` (and, with ``--xformers``, that pin) from a local wheel directory (``--find-links``,
no index: the wheel cache ``make wheels`` fills) into a throw-away venv and prints one JSON object::

    {"torch": "2.1.2+cu121", "cuda": "12.1", "arch_flags": ["sm_50", ...], "wheel": "torch-2.1.2-...whl",
     "wheel_sha256": "...", "xformers": {"version": ..., "torch_cuda_arch_list": ...}, "captured_on": "..."}

``torch._C._cuda_getArchFlags()`` reads the arch list compiled into libtorch_cuda and needs no GPU (the public
``torch.cuda.get_arch_list()`` returns [] when no GPU answers). The captures are committed under
``tests/fixtures/torch/`` and cited by the compatibility table (``plugins/module_utils/torch_builds.py``).

Usage: ``scripts/torch_arch_capture.py --find-links ~/.cache/sdfleet/wheelhouse/files --torch 2.1.2
[--xformers 0.0.23.post1] > tests/fixtures/torch/pypi-torch-2.1.2.json``
"""
from __future__ import annotations

import argparse
import hashlib
import json
import platform
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

PROBE = r"""
import json, torch
out = {"torch": torch.__version__, "cuda": torch.version.cuda, "arch_flags": torch._C._cuda_getArchFlags().split()}
try:
    import xformers, xformers.info  # noqa: F401
    from xformers import _cpp_lib
    info = _cpp_lib._build_metadata
    out["xformers"] = {"version": xformers.__version__,
                       "torch_cuda_arch_list": (info.build_env or {}).get("TORCH_CUDA_ARCH_LIST") if info else None,
                       "cuda": info.cuda_version if info else None}
except Exception as exc:  # xformers not asked for, or its metadata not readable
    out["xformers_error"] = f"{type(exc).__name__}: {exc}"
print(json.dumps(out))
"""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--find-links", required=True, type=Path, help="directory of wheels (no index is used)")
    parser.add_argument("--torch", required=True, help="torch version to install, e.g. 2.1.2")
    parser.add_argument("--xformers", default="", help="xformers version to install with --no-deps")
    parser.add_argument("--constraints", type=Path, help="a lock (name==version lines, hashes allowed) to hold the "
                        "dependencies to, so pip does not backtrack over every version in --find-links")
    args = parser.parse_args()
    wheels = sorted(args.find_links.glob(f"torch-{args.torch}-*.whl"))
    if not wheels:
        print(f"no torch-{args.torch}-*.whl in {args.find_links}: run make wheels first", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="sdfleet-torch-") as tmp:
        venv.create(tmp, with_pip=True)
        python = str(Path(tmp) / "bin" / "python")
        pip = [python, "-m", "pip", "install", "-q", "--no-index", "--find-links", str(args.find_links)]
        if args.constraints:
            pins = Path(tmp) / "constraints.txt"
            pins.write_text("".join(line.split(" --hash", 1)[0].strip() + "\n"
                                    for line in args.constraints.read_text(encoding="utf-8").splitlines()
                                    if "==" in line and not line.startswith("#")), encoding="utf-8")
            pip += ["--constraint", str(pins)]
        subprocess.run([*pip, f"torch=={args.torch}"], check=True)
        if args.xformers:
            # xformers' build metadata is read by importing it, which imports numpy.
            subprocess.run([*pip, "--no-deps", f"xformers=={args.xformers}", "numpy"], check=True)
        probe = subprocess.run([python, "-c", PROBE], check=True, capture_output=True, text=True)
    result = json.loads(probe.stdout)
    result.update({"wheel": wheels[0].name, "wheel_sha256": _sha256(wheels[0]), "source": "pypi.org",
                   "captured_on": f"{platform.system()} {platform.machine()} Python {platform.python_version()}, no GPU"})
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
