"""`accelerate launch --num_processes 2` on CPU (gloo) runs `vidalign train dpo` unchanged: ranks see disjoint
samples and end with identical (all-reduced) LoRA weights."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import yaml

from vidalign.shards import ShardWriter

C = 4

SCRIPT = textwrap.dedent('''
    import hashlib, json, os, sys
    import torch
    from vidalign.cli import main
    from vidalign.training.dpo_trainer import DiffusionDPOTrainer

    seen = []
    _step = DiffusionDPOTrainer.training_step

    def training_step(self, model, inputs, num_items_in_batch=None):
        seen.extend(inputs["__key__"])
        return _step(self, model, inputs, num_items_in_batch)

    DiffusionDPOTrainer.training_step = training_step
    _train = DiffusionDPOTrainer.train

    def train(self, *a, **k):
        out = _train(self, *a, **k)
        lora = {n: p.detach() for n, p in self.model.named_parameters() if "lora_" in n}
        digest = hashlib.sha256(b"".join(v.numpy().tobytes() for _, v in sorted(lora.items()))).hexdigest()
        with open(os.path.join(sys.argv[2], f"rank{self.args.process_index}.json"), "w") as fh:
            json.dump({"keys": seen, "world": self.args.world_size, "lora": digest}, fh)
        return out

    DiffusionDPOTrainer.train = train
    sys.exit(main(["train", "dpo", "--config", sys.argv[1]]))
''')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_accelerate_two_processes_disjoint_samples(tmp_path):
    accelerate = shutil.which("accelerate") or os.path.join(os.path.dirname(sys.executable), "accelerate")
    if not os.path.exists(accelerate):
        pytest.skip("accelerate launcher not found")
    import torch
    from diffusers import WanTransformer3DModel

    torch.manual_seed(0)
    WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8, in_channels=C,
                          out_channels=C, text_dim=16, freq_dim=16, ffn_dim=32, num_layers=1,
                          rope_max_seq_len=32).save_pretrained(str(tmp_path / "wan"))
    rng = np.random.default_rng(0)
    for s in range(4):
        with ShardWriter(tmp_path / "ds", f"data/default/train-{s:05d}-of-00004.tar") as w:
            for i in range(2):
                w.write(f"s0-{2 * s + i:08d}", {
                    "json": {"prompt": "p", "latents": {"scaling_factor": 1.0}},
                    "prompt_embeds.npy": np.ones((6, 16), np.float16),
                    "chosen_latents.npy": rng.standard_normal((C, 5, 8, 8)).astype(np.float16),
                    "rejected_latents.npy": rng.standard_normal((C, 5, 8, 8)).astype(np.float16)})
    cfg = {"model_name_or_path": str(tmp_path / "wan"), "model_subfolder": None, "train_data": str(tmp_path / "ds"),
           "output_dir": str(tmp_path / "run"), "bf16": False, "use_cpu": True, "max_steps": 2,
           "gradient_accumulation_steps": 1, "per_device_train_batch_size": 2, "lora_rank": 4, "lora_alpha": 4,
           "learning_rate": 1e-2, "logging_steps": 1, "save_steps": 100, "disable_tqdm": True,
           "dataloader_num_workers": 0, "ddp_backend": "gloo"}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "run_dpo.py").write_text(SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    # on a CPU-only machine `--multi_gpu` selects accelerate's torchrun launcher; the ranks then run MULTI_CPU (gloo)
    cmd = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "--main_process_port", str(_free_port()), "--num_cpu_threads_per_process", "1",
           str(tmp_path / "run_dpo.py"), str(tmp_path / "cfg.yaml"), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert all(r["world"] == 2 for r in ranks)
    a, b = set(ranks[0]["keys"]), set(ranks[1]["keys"])
    assert len(ranks[0]["keys"]) == len(ranks[1]["keys"]) == 4  # 2 steps × 2 pairs per rank
    assert not a & b  # each rank streams its own shards
    assert ranks[0]["lora"] == ranks[1]["lora"]  # DDP kept the replicas identical
    assert (tmp_path / "run" / "pytorch_lora_weights.safetensors").is_file()
    assert "on 2 process(es)" in proc.stdout


def test_close_process_group_tears_down_gloo(tmp_path):
    import torch.distributed as dist

    from vidalign.training.commands import close_process_group

    close_process_group()  # no group: nothing to do
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    assert dist.is_initialized()
    close_process_group()
    assert not dist.is_initialized()
