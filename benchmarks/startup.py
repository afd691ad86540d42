"""Start-up cost of the commands people type first, and of the torchcodec probe.

Lines printed (each a fresh subprocess, median of ``--repeats`` runs, all measured in this run):

1. wall time of ``vidalign --help``, ``vidalign build --help``, ``vidalign verify DS`` and ``vidalign info DS``
   on a 7-sample synthetic dataset, each as a ratio to a bare ``python -c pass`` (the interpreter's own
   start-up), and the modules costing most in each (``python -X importtime``, cumulative);
2. the torchcodec probe: ``vidalign.videodecode.torchcodec_available()`` in a fresh process vs importing
   ``torchcodec.decoders``, which is what the probe did before (it imports torch and loads FFmpeg).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _wall(cmd: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _top_imports(args: list[str], n: int = 3) -> str:
    err = subprocess.run([sys.executable, "-X", "importtime", "-m", "vidalign.cli", *args], capture_output=True,
                         text=True).stderr
    rows = []
    for line in err.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit() and not parts[2].startswith("   "):  # top-level only
            rows.append((int(parts[1]), parts[2].strip()))
    return ", ".join(f"{name} {us / 1e6:.2f} s" for us, name in sorted(rows, reverse=True)[:n])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)

    from vidalign.builder import BuildOptions
    from vidalign.runner import run_build

    ds = Path(tempfile.mkdtemp(prefix="vidalign_bench_startup_")) / "ds"
    run_build("synthetic", {"num_samples": 7, "video": True}, BuildOptions(out=ds, samples_per_shard=3,
                                                                            progress=False))
    load = os.getloadavg()[0]
    base = _wall([sys.executable, "-c", "pass"], args.repeats)
    print(f"[1] bare interpreter start-up {base:.3f} s (load average {load:.1f}, {os.cpu_count()} CPUs)")
    for label, cmd in (("vidalign --help", ["--help"]), ("vidalign build --help", ["build", "--help"]),
                       ("vidalign verify DS", ["verify", str(ds)]), ("vidalign info DS", ["info", str(ds)])):
        t = _wall([sys.executable, "-m", "vidalign.cli", *cmd], args.repeats)
        print(f"    {label:<22} {t:.3f} s = {t / base:.1f}× bare start-up; top imports: {_top_imports(cmd)}")

    probe = _wall([sys.executable, "-c", "from vidalign.videodecode import torchcodec_available as p; p()"],
                  args.repeats)
    old = _wall([sys.executable, "-c", "from vidalign.errors import VidalignError\n"
                 "try:\n    from torchcodec.decoders import VideoDecoder\nexcept Exception:\n    pass"],
                max(1, args.repeats // 2))
    print(f"[2] torchcodec probe in a fresh process: {probe:.3f} s (without torch) vs importing torchcodec.decoders "
          f"{old:.3f} s (the old probe) → {old / probe:.0f}× less start-up; load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
