"""Trainer configs (defaults, YAML, overrides, one-line errors) and the `vidalign train dpo|sft` command."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import yaml

from vidalign.cli import main
from vidalign.errors import ConfigError
from vidalign.shards import ShardWriter
from vidalign.training.commands import resolve_config
from vidalign.training.config import (
    TEXT_PATHWAY_TARGETS,
    DiffusionDPOConfig,
    DiffusionSFTConfig,
    build_config,
    load_config,
)

C = 4


@pytest.fixture(autouse=True)
def _one_torch_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_defaults_follow_spec(tmp_path):
    dpo = DiffusionDPOConfig(output_dir=str(tmp_path))
    assert (dpo.beta, dpo.logit_clip, dpo.reg_weight, dpo.lora_rank, dpo.lora_alpha) == (1.0, 5.0, 0.5, 16, 16.0)
    assert dpo.shared_timestep and not dpo.shared_noise and dpo.timestep_sampler == "shifted"
    assert dpo.flow_shift == 5.0 and dpo.gradient_accumulation_steps == 48 and dpo.warmup_steps == 300
    assert dpo.learning_rate == 1e-4 and dpo.max_steps == 3000 and dpo.save_steps == 100
    assert tuple(dpo.lora_target_modules) == TEXT_PATHWAY_TARGETS and dpo.ignore_data_skip
    sft = DiffusionSFTConfig(output_dir=str(tmp_path))
    assert sft.timestep_sampler == "logit_normal" and sft.first_frame_conditioning and sft.ema_decay == 0.99
    assert sft.max_grad_norm == 1.0


@pytest.mark.parametrize("values, field", [
    ({"beta": 0}, "beta"), ({"beta": -1.0}, "beta"), ({"loss_type": "kto"}, "loss_type"),
    ({"lora_rank": 0}, "lora_rank"), ({"timestep_sampler": "cosine"}, "timestep_sampler"),
    ({"caption_dropout": 1.5}, "caption_dropout"), ({"learning_rate": "fast"}, "learning_rate"),
    ({"betta": 2}, "betta"), ({"logit_clip": 0}, "logit_clip"), ({"lora_target_modules": []}, "lora_target"),
])
def test_bad_values_fail_in_one_line(values, field):
    with pytest.raises(ConfigError, match=field) as exc:
        build_config("dpo", values, "cfg.yaml")
    assert str(exc.value).startswith("cfg.yaml: ") and "\n" not in str(exc.value)


def test_yaml_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("beta: 5000\nlearning_rate: 6e-6\nlora_target_modules: [attn2.to_k]\nmax_steps: 7\n")
    cfg = load_config("dpo", p, ["beta=2.5", "shared_noise=true", f"output_dir={tmp_path}/o"])
    assert cfg.beta == 2.5 and cfg.learning_rate == 6e-6 and cfg.shared_noise and cfg.max_steps == 7
    assert cfg.lora_target_modules == ["attn2.to_k"] and cfg.output_dir == f"{tmp_path}/o"
    with pytest.raises(ConfigError, match="key=value"):
        load_config("dpo", p, ["beta"])
    (tmp_path / "bad.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config("dpo", tmp_path / "bad.yaml")


@pytest.mark.parametrize("name, kind", [("spatialalign_dpo", "dpo"), ("videodpo_dpo", "dpo"), ("pisa_psft", "sft")])
def test_example_configs_load(name, kind, tmp_path):
    path = resolve_config(name)
    assert os.path.isfile(path)
    cfg = load_config(kind, path, [f"output_dir={tmp_path}"])
    if name == "spatialalign_dpo":
        assert (cfg.beta, cfg.reg_weight, cfg.lora_rank, cfg.data_format) == (1.0, 0.5, 16, "groups")
        assert cfg.error_reduction == "sample"  # SpatialAlign's train.py: .mean(dim=[1, 2, 3, 4])
    elif name == "videodpo_dpo":
        assert (cfg.beta, cfg.logit_scale, cfg.logit_clip, cfg.caption_dropout) == (5000.0, 0.5, None, 0.2)
        assert not cfg.shared_timestep and not cfg.use_lora and cfg.pair_weight_key == "weight"
        # the released code's per-column errors, and the encoded "" of the data for dropped captions
        assert cfg.error_reduction == "column" and cfg.empty_prompt_embeds is None
    else:
        assert cfg.first_frame_conditioning and cfg.timestep_sampler == "logit_normal"


# ----------------------------------------------------------------------------------------------- CLI
def _tiny_model_dir(root) -> str:
    from diffusers import WanTransformer3DModel

    torch.manual_seed(0)
    m = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8, in_channels=C,
                              out_channels=C, text_dim=16, freq_dim=16, ffn_dim=32, num_layers=1, rope_max_seq_len=32)
    m.save_pretrained(str(root / "wan" / "transformer"))
    return str(root / "wan")


def _latent_pairs(root, video_only: bool = False) -> str:
    rng = np.random.default_rng(0)
    with ShardWriter(root / "ds", "data/default/train-00000-of-00001.tar") as w:
        for i in range(4):
            meta = {"prompt": "a cat", "seed": i, "latents": {"latents_mean": [0.0] * C, "latents_std": [1.0] * C}}
            if video_only:
                w.write(f"s0-{i:08d}", {"json": meta, "chosen.mp4": b"\x00", "rejected.mp4": b"\x00"})
                continue
            w.write(f"s0-{i:08d}", {"json": meta, "prompt_embeds.npy": np.ones((6, 16), np.float16),
                                    "chosen_latents.npy": rng.standard_normal((C, 5, 8, 8)).astype(np.float16),
                                    "rejected_latents.npy": rng.standard_normal((C, 5, 8, 8)).astype(np.float16)})
    return str(root / "ds")


def _cfg_file(tmp_path, **extra) -> str:
    cfg = {"model_name_or_path": _tiny_model_dir(tmp_path), "train_data": _latent_pairs(tmp_path),
           "output_dir": str(tmp_path / "run"), "bf16": False, "use_cpu": True, "max_steps": 2,
           "gradient_accumulation_steps": 1, "per_device_train_batch_size": 2, "lora_rank": 4, "lora_alpha": 4,
           "logging_steps": 1, "save_steps": 1, "disable_tqdm": True, "dataloader_num_workers": 0}
    cfg.update(extra)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_cli_trains_and_resumes(tmp_path, capsys):
    cfg = _cfg_file(tmp_path)
    assert main(["train", "dpo", "--config", cfg]) == 0
    out = capsys.readouterr().out
    assert "vidalign train dpo: 2 steps" in out
    run = tmp_path / "run"
    assert (run / "pytorch_lora_weights.safetensors").is_file() and (run / "checkpoint-2").is_dir()
    assert (run / "checkpoint-2" / "stream_state-rank0.json").is_file()
    assert main(["train", "dpo", "--config", cfg, "max_steps=3", "--resume"]) == 0
    assert "3 steps" in capsys.readouterr().out


@pytest.mark.parametrize("extra, needle", [
    (["beta=0"], "beta"),
    (["loss_type=kto"], "loss_type"),
    (["lora_target_modules=[attn3.to_q]"], "attn3.to_q"),
    (["betta=1"], "betta"),
])
def test_cli_bad_configs_fail_in_one_line(tmp_path, capsys, extra, needle):
    assert main(["train", "dpo", "--config", _cfg_file(tmp_path)] + extra) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vidalign: error:") and needle in err and "\n" not in err


def test_cli_video_shards_fail_in_one_line(tmp_path, capsys):
    cfg = _cfg_file(tmp_path)
    data = _latent_pairs(tmp_path / "v", video_only=True)
    assert main(["train", "dpo", "--config", cfg, f"train_data={data}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no latents" in err and "vidalign encode" in err and "\n" not in err
    assert main(["train", "sft", "--config", cfg, "--resume"]) == 2  # nothing to resume from
    assert "checkpoint" in capsys.readouterr().err
