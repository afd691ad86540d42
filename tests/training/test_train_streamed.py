"""SFT and DPO train from datasets served over the network — a plain HTTP server (an `http://` root, as from an
object store or a web server) and the Hub (`org/name`, pushed with `vidalign.hub.push`) — on 2 ranks (torchrun,
gloo, CPU) × 2 DataLoader workers: every sample is trained once per epoch across the job, and a run resumed from its
mid-epoch checkpoint ends with exactly the weights of the uninterrupted run, having seen the same samples."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap

import pytest

from vidalign.builder import BuildOptions
from vidalign.runner import run_build

SCRIPT = textwrap.dedent('''
    import hashlib, json, os, sys
    import torch
    from vidalign.training.config import build_config
    from vidalign.training.dpo_trainer import DiffusionDPOTrainer
    from vidalign.training.sft_trainer import DiffusionSFTTrainer

    torch.set_num_threads(1)
    out, wan, sources = sys.argv[1], sys.argv[2], {"sft": sys.argv[3], "dpo": sys.argv[4]}
    classes = {"sft": DiffusionSFTTrainer, "dpo": DiffusionDPOTrainer}

    def run(kind, resume=None):
        cls, seen = classes[kind], []
        step = cls.training_step

        def training_step(self, model, inputs, num_items_in_batch=None):
            seen.append(list(inputs["__key__"]))
            return step(self, model, inputs, num_items_in_batch)

        cls.training_step = training_step
        try:
            cfg = build_config(kind, {
                "model_name_or_path": wan, "train_data": sources[kind], "output_dir": f"{out}/{kind}",
                "use_cpu": True, "bf16": False, "ddp_backend": "gloo", "max_steps": 4, "save_steps": 2,
                "per_device_train_batch_size": 2, "gradient_accumulation_steps": 1, "dataloader_num_workers": 2,
                "learning_rate": 1e-2, "lora_rank": 4, "lora_alpha": 4, "use_lora": True, "ema_decay": None,
                "caption_dropout": 0.3, "disable_tqdm": True, "report_to": "none", "logging_steps": 1,
                "shuffle_buffer": 3 if kind == "sft" else 0})
            trainer = cls(args=cfg)
            trainer.train(resume_from_checkpoint=resume)
        finally:
            cls.training_step = step
        params = sorted((n, p.detach()) for n, p in trainer.model.named_parameters() if p.requires_grad)
        digest = hashlib.sha256(b"".join(p.numpy().tobytes() for _, p in params)).hexdigest()
        return {"batches": seen, "digest": digest, "world": cfg.world_size}

    result = {}
    for kind in ("sft", "dpo"):
        full = run(kind)
        resumed = run(kind, resume=f"{out}/{kind}/checkpoint-2")
        result[kind] = {"full": full, "resumed": resumed}
    rank = int(os.environ["RANK"])
    with open(f"{out}/rank{rank}.json", "w") as fh:
        json.dump(result, fh)
''')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _latents(folder, kind: str) -> None:
    """16 latent samples in 8 shards, as `vidalign encode` writes them (manifest, card, empty caption)."""
    run_build("synthetic-latents", {"num_samples": 16, "kind": kind, "channels": 4, "frames": 3, "height": 4,
                                    "width": 4, "text_len": 6, "text_dim": 16},
              BuildOptions(out=folder, samples_per_shard=2, progress=False, seed=1))


@pytest.mark.slow
def test_sft_and_dpo_stream_over_http_and_hub_on_two_ranks_and_resume_exactly(tmp_path, http_server, hub_server):
    from vidalign.hub import push
    from vidalign.training.components import random_wan_components, save_components

    save_components(random_wan_components("tiny", seed=0), tmp_path / "wan")
    _latents(http_server.root / "clips", "clips")
    _latents(tmp_path / "pairs", "pairs")
    push(tmp_path / "pairs", "org/pair-latents")
    (tmp_path / "train.py").write_text(SCRIPT)
    torchrun = shutil.which("torchrun") or os.path.join(os.path.dirname(sys.executable), "torchrun")
    env = dict(os.environ, OMP_NUM_THREADS="1", **hub_server.env())
    cmd = [torchrun, "--nproc_per_node", "2", "--rdzv_backend", "c10d", "--rdzv_endpoint",
           f"127.0.0.1:{_free_port()}", str(tmp_path / "train.py"), str(tmp_path / "runs"), str(tmp_path / "wan"),
           f"{http_server.url}/clips", "org/pair-latents"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [json.loads((tmp_path / "runs" / f"rank{r}.json").read_text()) for r in range(2)]
    every = {f"s1-{i:08d}" for i in range(16)}
    for kind in ("sft", "dpo"):
        full = [r[kind]["full"] for r in ranks]
        resumed = [r[kind]["resumed"] for r in ranks]
        assert all(f["world"] == 2 for f in full)
        # one epoch: 2 ranks × 4 steps × 2 samples = 16, each sample once across ranks and workers
        keys = [k for f in full for batch in f["batches"] for k in batch]
        assert len(keys) == 16 and set(keys) == every, kind
        # resumed from the mid-epoch checkpoint: the same last two batches per rank, the same final weights
        for f, r in zip(full, resumed):
            assert r["batches"] == f["batches"][2:], kind
            assert r["digest"] == f["digest"], kind
        assert full[0]["digest"] == full[1]["digest"]  # DDP kept the replicas identical
    # the shards came over the network: HTTP GETs of the clip shards, Hub downloads of the pair shards
    assert http_server.count("GET", "/clips/data/clips/") >= 8
    assert hub_server.count("GET", "/datasets/org/pair-latents/resolve/") >= 8
