"""``synthetic``: a builder of random arrays (and optional videos), for benchmarks and for checking a set-up.

Each sample is a pure function of (seed, index): the same arguments always give byte-identical shards.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vidalign.builder import Builder, Sample, register_builder
from vidalign.errors import require


@register_builder
class SyntheticBuilder(Builder):
    name = "synthetic"
    description = "Random arrays and optional short videos: a reproducible workload for benchmarks and checks."
    tags = ["synthetic"]
    columns = ("prompt.txt", "seed.json", "index.json", "label.json")
    gzip_members = ("depth.npy",)

    @dataclass
    class Args:
        num_samples: int = field(default=16, metadata={"help": "samples to write"})
        frames: int = field(default=4, metadata={"help": "frames per array/video"})
        size: int = field(default=32, metadata={"help": "height and width"})
        video: bool = field(default=False, metadata={"help": "also write an H.264 mp4 member"})
        split: str = field(default="train", metadata={"help": "split name"})
        work_ms: float = field(default=0.0, metadata={"help": "extra compute per sample in ms (stands in for "
                                                               "rendering in executor benchmarks)", "output": False})

        def __post_init__(self):
            require(self.num_samples >= 1, "synthetic", "num_samples", self.num_samples, "use >= 1")
            require(self.frames >= 1, "synthetic", "frames", self.frames, "use >= 1")
            require(self.size >= 2, "synthetic", "size", self.size, "use >= 2")
            require(self.work_ms >= 0, "synthetic", "work_ms", self.work_ms, "use >= 0")

    @property
    def expensive_samples(self) -> bool:  # with --work-ms it stands in for a renderer: plan like one
        return self.args.work_ms > 0

    def estimate_sample_mb(self) -> float:
        a = self.args
        return max(a.frames * a.size * a.size * 3 / 1e6, 1e-3)

    def plan(self):
        return self.split_range("default", self.args.split, self.args.num_samples)

    def build_shard(self, job):
        import time

        a = self.args
        for i in job.indices():
            rng = np.random.default_rng([self.seed, i])
            t_end = time.perf_counter() + a.work_ms / 1000
            while time.perf_counter() < t_end:  # busy work, like a renderer would do
                rng.random(64)
            frames = rng.integers(0, 256, size=(a.frames, a.size, a.size, 3), dtype=np.uint8)
            n = 1 + i % 3
            members = {
                "json": {"index": i, "seed": self.seed, "label": int(rng.integers(0, 10)), "prompt": f"sample {i}"},
                "frames.npy": frames,
                "mask.npz": {"mask": rng.random((a.frames, n, a.size, a.size)) > 0.5},
                "depth.npy": rng.random((a.frames, a.size, a.size)).astype(np.float16),
            }
            if a.video:
                from vidalign.media import encode_mp4

                members["mp4"] = encode_mp4(frames, fps=16)
            yield Sample(self.key(i), members)
