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


FSDP_SCRIPT = textwrap.dedent('''
    import json, sys
    from types import SimpleNamespace
    import torch, torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from vidalign.training.components import random_wan_components
    from vidalign.training.fsdp import load_sharded
    from vidalign.training.lora import add_lora
    from vidalign.training.trainer_base import VidalignTrainer

    dist.init_process_group("gloo")
    torch.set_num_threads(1)
    mesh = init_device_mesh("cpu", (2,))
    root = sys.argv[1]


    def build(seed):
        torch.manual_seed(0)
        m = random_wan_components("tiny").transformer
        if use_lora:
            add_lora(m, cfg)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():  # "trained" weights differ between the two models
            for p in m.parameters():
                if p.requires_grad:
                    p.add_(torch.randn(p.shape, generator=gen))
        return m

    def shard(m):
        for block in m.blocks:
            fully_shard(block, mesh=mesh)
        return fully_shard(m, mesh=mesh)

    full = StateDictOptions(full_state_dict=True, cpu_offload=True)
    for tuning in ("lora", "full"):
      folder, use_lora = f"{root}/{tuning}", tuning == "lora"
      cfg = SimpleNamespace(lora_rank=4, lora_alpha=4, lora_dropout=0.0, peft_config=None, use_lora=use_lora,
                            lora_target_modules=["attn2.to_k", "attn2.to_v"], pipeline_class="WanPipeline")
      trained, reference = shard(build(1)), build(1)
      # save: what Trainer.save_model hands to _save under FSDP (FULL_STATE_DICT), written by rank 0
      sd = get_model_state_dict(trained, options=full)
      if dist.get_rank() == 0:
          VidalignTrainer.save_weights(SimpleNamespace(args=cfg), trained, folder, sd)
      dist.barrier()
      # resume: a fresh sharded model with other weights loads the checkpoint on every rank
      fresh = shard(build(2))
      load_sharded(fresh, folder, use_lora)
      got = get_model_state_dict(fresh, options=full)
      x, t, e = torch.randn(1, 4, 3, 4, 4), torch.tensor([500.0]), torch.randn(1, 6, 16)
      with torch.no_grad():
          same_out = torch.allclose(fresh(x, t, e, return_dict=False)[0], reference(x, t, e, return_dict=False)[0],
                                    atol=1e-5)
      ref = reference.state_dict()
      ok = all(torch.equal(got[k].cpu(), ref[k]) for k in ref) if dist.get_rank() == 0 else True
      with open(f"{folder}/rank{dist.get_rank()}.json", "w") as fh:
          json.dump({"weights_equal": ok, "output_equal": bool(same_out), "keys": len(got)}, fh)
      dist.barrier()
    dist.destroy_process_group()
''')


@pytest.mark.slow
def test_fsdp_checkpoint_round_trip_on_gloo(tmp_path):
    """FSDP2 (fully_shard) on 2 CPU ranks over gloo: the gathered state dict saves in diffusers format and a fresh
    sharded model resumes from it with identical weights and outputs."""
    torchrun = shutil.which("torchrun") or os.path.join(os.path.dirname(sys.executable), "torchrun")
    (tmp_path / "fsdp.py").write_text(FSDP_SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [torchrun, "--nproc_per_node", "2", "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{_free_port()}",
           str(tmp_path / "fsdp.py"), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for tuning, saved in (("lora", "pytorch_lora_weights.safetensors"), ("full", "transformer")):
        ranks = [json.loads((tmp_path / tuning / f"rank{r}.json").read_text()) for r in range(2)]
        assert all(r["weights_equal"] and r["output_equal"] for r in ranks), (tuning, ranks)
        assert (tmp_path / tuning / saved).exists()


@pytest.mark.slow
def test_readme_torchrun_recipe_trains_reward_under_ddp(tmp_path):
    """The README's multi-node line (torchrun with a c10d rendezvous, here 1 node × 2 ranks on gloo) runs the reward
    trainer under DDP with gradients through every sampling step (several forwards per backward, full fine-tune,
    no find_unused_parameters)."""
    import importlib.util

    from vidalign.training.components import random_wan_components, save_components

    spec = importlib.util.spec_from_file_location("drop_helpers", os.path.join(os.path.dirname(__file__),
                                                                               "test_reward_training.py"))
    helpers = importlib.util.module_from_spec(spec)
    sys.modules["drop_helpers"] = helpers
    spec.loader.exec_module(helpers)
    helpers._write_drop_shards(tmp_path / "drops", n=2)
    save_components(random_wan_components("tiny", seed=0), tmp_path / "wan")
    cfg = {"model_name_or_path": str(tmp_path / "wan"), "train_data": str(tmp_path / "drops"),
           "rewards": [{"name": "flow", "model": "horn_schunck"}], "decode_frames": "all", "backprop_mode": "all",
           "use_lora": False, "height": 32, "width": 32, "num_frames": 9, "num_inference_steps": 3,
           "max_sequence_length": 8, "guidance_scale": 1.0, "max_steps": 2, "use_cpu": True, "bf16": False,
           "disable_tqdm": True, "report_to": "none", "ddp_backend": "gloo", "output_dir": str(tmp_path / "run")}
    (tmp_path / "oro.yaml").write_text(yaml.safe_dump(cfg))
    torchrun = shutil.which("torchrun") or os.path.join(os.path.dirname(sys.executable), "torchrun")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [torchrun, "--nnodes", "1", "--nproc_per_node", "2", "--rdzv_id", "test", "--rdzv_backend", "c10d",
           "--rdzv_endpoint", f"127.0.0.1:{_free_port()}", "-m", "vidalign.cli", "train", "reward", "--config",
           str(tmp_path / "oro.yaml")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "vidalign train reward: 2 steps" in proc.stdout and "on 2 process(es)" in proc.stdout, proc.stdout[-2000:]
    ckpt = tmp_path / "run" / "checkpoint-2"
    assert (ckpt / "stream_state-rank0.json").is_file() and (ckpt / "stream_state-rank1.json").is_file()
    assert (tmp_path / "run" / "transformer" / "config.json").is_file()
