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


@register_builder
class SyntheticLatentsBuilder(Builder):
    """Latent samples exactly as ``vidalign encode`` writes them (:mod:`vidalign.contract`), with random values:
    a training workload that needs no VAE or text encoder (trainer benchmarks, checking a cluster set-up)."""

    name = "synthetic-latents"
    description = ("Random latent samples in the layout `vidalign encode` writes (pairs: chosen/rejected latents with "
                   "a pair record and weight; clips: one latent), with text embeddings and the stored empty caption: "
                   "a reproducible training workload without a VAE.")
    tags = ["synthetic", "latents"]
    columns = ("prompt.txt", "weight.json")

    @dataclass
    class Args:
        num_samples: int = field(default=16, metadata={"help": "samples to write"})
        kind: str = field(default="pairs", metadata={"help": "pairs (chosen/rejected latents) or clips (latents)",
                                                       "choices": ["pairs", "clips"]})
        channels: int = field(default=16, metadata={"help": "latent channels (Wan: 16)"})
        frames: int = field(default=21, metadata={"help": "latent frames (Wan, 81 video frames: 21)"})
        height: int = field(default=60, metadata={"help": "latent height (Wan at 480 px: 60)"})
        width: int = field(default=104, metadata={"help": "latent width (Wan at 832 px: 104)"})
        text_len: int = field(default=512, metadata={"help": "text embedding length (Wan: 512)"})
        text_dim: int = field(default=4096, metadata={"help": "text embedding width (umT5-XXL: 4096)"})
        split: str = field(default="train", metadata={"help": "split name"})

        def __post_init__(self):
            for name in ("num_samples", "channels", "frames", "height", "width", "text_len", "text_dim"):
                require(getattr(self, name) >= 1, "synthetic-latents", name, getattr(self, name), "use >= 1")
            require(self.kind in ("pairs", "clips"), "synthetic-latents", "kind", self.kind, "use pairs or clips")

    def estimate_sample_mb(self) -> float:
        a = self.args
        n = 2 if a.kind == "pairs" else 1
        return max((n * a.channels * a.frames * a.height * a.width + a.text_len * a.text_dim) * 2 / 1e6, 1e-3)

    def plan(self):
        return self.split_range(self.args.kind, self.args.split, self.args.num_samples)

    def build_shard(self, job):
        from vidalign import contract as C

        a = self.args
        norm = {"latents_mean": [0.0] * a.channels, "latents_std": [1.0] * a.channels, "scaling_factor": None,
                "vae": "synthetic", "kind": "mean"}
        shape = (a.channels, a.frames, a.height, a.width)
        for i in job.indices():
            rng = np.random.default_rng([self.seed, i])
            used = 1 + int(rng.integers(a.text_len))
            emb = rng.standard_normal((a.text_len, a.text_dim), dtype=np.float32).astype(np.float16)
            emb[used:] = 0
            prompt = f"synthetic sample {i}"
            members = {C.PROMPT_EMBEDS: emb, C.PROMPT_MASK: np.arange(a.text_len) < used}
            if a.kind == "pairs":
                record = C.pair_record(prompt, 0.6, 0.4, float(0.5 + rng.random()), index=i)
                for name in (C.CHOSEN, C.REJECTED):
                    members[C.latents_member(name)] = rng.standard_normal(shape, dtype=np.float32).astype(np.float16)
            else:
                record = {"prompt": prompt, "weight": 1.0, "index": i}
                members[C.latents_member("")] = rng.standard_normal(shape, dtype=np.float32).astype(np.float16)
            members["json"] = {**record, C.LATENTS_FIELD: norm}
            yield Sample(self.key(i), members)

    def finalize(self, folder, manifest: dict) -> None:
        from vidalign import contract as C

        a = self.args
        C.write_empty_prompt_embeds(folder, np.zeros((a.text_len, a.text_dim), np.float32))
