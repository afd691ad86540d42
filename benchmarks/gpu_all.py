"""Every GPU benchmark line in one call: the real Wan 2.1 1.3B shapes, random weights, bf16.

    python benchmarks/gpu_all.py            # on a CUDA machine: ~10 minutes on one H100/H200-class GPU

Runs, each in its own process (own peak memory, a crash does not stop the others):

* ``benchmarks/train.py --gpu-only``: DPO step (LoRA r16 on the text pathway, adapter-off reference) and SFT step
  of ``WanTransformer3DModel`` with the 1.3B config on latents [16, 21, 60, 104] (81 frames at 480×832) with umT5
  embeddings [512, 4096]: seconds per pair, peak memory, DPO/SFT memory ratio, trainer vs bare-loop overhead;
* ``benchmarks/encode.py --gpu-only``: the Wan 2.1 VAE encoding 81×480×832 clips, with and without tiling;
* ``benchmarks/reward.py --gpu-only``: reward-gradient steps at 480×832×81 (last/all backprop, one/all frames) and
  the reward trainer vs a bare loop.

Without CUDA every line prints ``skipped`` and the script exits 0. ``--only train|encode|reward`` picks one;
``--timeout`` bounds each part (seconds).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PARTS = {
    "train": ["train.py", "--gpu-only", "--gpu-steps", "4"],
    "encode": ["encode.py", "--gpu-only", "--gpu-clips", "3"],
    "reward": ["reward.py", "--gpu-only", "--repeats", "2"],
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=sorted(PARTS), action="append", help="run only these parts")
    ap.add_argument("--timeout", type=int, default=900, help="seconds per part")
    args = ap.parse_args(argv)
    import torch

    parts = args.only or list(PARTS)
    if not torch.cuda.is_available():
        for name in parts:
            print(f"[{name}] skipped: CUDA is not available (Wan 2.1 1.3B shapes need a GPU)")
        return 0
    print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}", flush=True)
    failed = []
    for name in parts:
        script, *extra = PARTS[name]
        cmd = [sys.executable, os.path.join(HERE, script), *extra]
        print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
        t0 = time.perf_counter()
        try:
            code = subprocess.run(cmd, timeout=args.timeout).returncode
        except subprocess.TimeoutExpired:
            code = "timeout"
        print(f"== {name}: exit {code} after {time.perf_counter() - t0:.0f}s", flush=True)
        if code != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
