"""The encode core: VAE and text-encoder loading, latents, prompt embeddings (vidalign.preprocessing.latents)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidalign import contract as C
from vidalign.errors import ConfigError, InputError
from vidalign.preprocessing import latents as lat
from vidalign.preprocessing import video_io as vio


def test_nine_frame_clip_gives_the_vae_latent_shape(clip_bytes, make_vae):
    vae = make_vae()
    clip = vio.load_clip(clip_bytes[0], vio.ClipSpec(frames=9, height=64, width=64))
    mean, logvar = lat.encode_videos(vae, clip.model_input()[None])
    # Wan: 4k+1 frames -> k+1 latent frames, 8x spatial compression, z_dim channels
    assert mean.shape == logvar.shape == (1, 4, 3, 8, 8)
    direct = vae.encode(clip.model_input()[None]).latent_dist
    assert torch.allclose(mean, direct.mean) and torch.allclose(logvar, direct.logvar)


def test_load_vae_from_model_and_pipeline_folders(tmp_path, tiny_pipeline_dir, make_vae):
    vae = make_vae()
    vae.save_pretrained(tmp_path / "vae_only")
    a = lat.load_vae(str(tmp_path / "vae_only"), dtype="fp32")
    b = lat.load_vae(str(tiny_pipeline_dir), dtype="bf16")  # auto: model_index.json + vae/
    assert type(a).__name__ == type(b).__name__ == "AutoencoderKLWan"
    assert next(b.parameters()).dtype == torch.bfloat16
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), vae.state_dict().values()))
    meta = lat.vae_meta(a, "vae_only", None)
    assert meta == {"vae": "vae_only", "revision": None, "vae_class": "AutoencoderKLWan",
                    "latents_mean": [0.0, 0.1, 0.2, pytest.approx(0.3)], "latents_std": [1.0, 1.5, 2.0, 2.5],
                    "scaling_factor": None}


def test_cogvideox_vae_loads_and_records_scaling_factor(tmp_path):
    from diffusers import AutoencoderKLCogVideoX

    cog = AutoencoderKLCogVideoX(down_block_types=("CogVideoXDownBlock3D",) * 2,
                                 up_block_types=("CogVideoXUpBlock3D",) * 2, block_out_channels=(8, 8),
                                 latent_channels=4, layers_per_block=1, norm_num_groups=2)
    cog.save_pretrained(tmp_path / "cog")
    vae = lat.load_vae(str(tmp_path / "cog"), dtype="fp32")
    assert type(vae).__name__ == "AutoencoderKLCogVideoX"
    norm = C.latent_norm(vae)
    assert norm["latents_mean"] is None and norm["scaling_factor"] == pytest.approx(1.15258426)
    mean, logvar = lat.encode_videos(vae, torch.zeros(1, 3, 9, 16, 16))
    assert mean.shape[1] == 4 and logvar is not None


def test_vae_path_that_does_not_exist_is_one_line(tmp_path):
    missing = tmp_path / "no" / "vae"
    with pytest.raises(ConfigError) as err:
        lat.load_vae(str(missing))
    assert str(err.value).startswith(f"--vae {missing}: no such directory") and "\n" not in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="neither config.json nor vae/config.json"):
        lat.load_vae(str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match="choose one of bf16, fp16, fp32"):
        lat.torch_dtype("int8")


def test_sampled_latents_are_seeded(make_vae):
    vae = make_vae()
    x = torch.rand(2, 3, 5, 16, 16) * 2 - 1
    s1, none = lat.encode_videos(vae, x, sample_seeds=[7, 8])
    s2, _ = lat.encode_videos(vae, x[1:], sample_seeds=[8])
    mean, logvar = lat.encode_videos(vae, x)
    assert none is None and torch.allclose(s1[1], s2[0], atol=1e-5)  # seed, not batch position, decides
    noise = torch.randn(mean.shape[1:], generator=torch.Generator().manual_seed(7))
    assert torch.allclose(s1[0], mean[0] + torch.exp(0.5 * logvar[0]) * noise, atol=1e-6)
    assert lat.sample_seed(0, "k1", "chosen.mp4") == lat.sample_seed(0, "k1", "chosen.mp4") != \
        lat.sample_seed(0, "k1", "rejected.mp4")


def test_prompt_embeddings_match_the_wan_pipeline(tiny_pipeline_dir):
    from diffusers import WanPipeline

    tokenizer, encoder = lat.load_text_encoder(str(tiny_pipeline_dir), dtype="fp32")
    prompts = ["a cat jumps  to the left of a box", "dog"]
    embeds, mask = C.encode_text(tokenizer, encoder, prompts, max_length=16)
    assert embeds.shape == (2, 16, encoder.config.d_model) and mask.dtype == torch.bool
    n_tokens = mask.sum(1).tolist()
    assert n_tokens[0] > n_tokens[1] >= 2  # "dog" + </s>
    assert torch.all(embeds[1, n_tokens[1]:] == 0)
    pipe = WanPipeline.from_pretrained(tiny_pipeline_dir)
    reference = pipe._get_t5_prompt_embeds(prompts, max_sequence_length=16, device=torch.device("cpu"))
    assert torch.allclose(embeds, reference.float(), atol=1e-6)


def test_text_encoder_errors(tmp_path, make_tokenizer):
    with pytest.raises(ConfigError, match="--text-encoder .*no such directory"):
        lat.load_text_encoder(str(tmp_path / "none"))
    make_tokenizer().save_pretrained(tmp_path / "tok_only")
    with pytest.raises(ConfigError, match="neither config.json nor text_encoder/config.json"):
        lat.load_text_encoder(str(tmp_path / "tok_only"))


def test_float16_storage():
    arr = lat.to_float16(torch.tensor([1.5, -2.25]), "k", "latents.npy")
    assert arr.dtype == np.float16 and arr.tolist() == [1.5, -2.25]
    with pytest.raises(InputError, match="k: field 'latents.npy': latent values reach 1e\\+06, beyond float16"):
        lat.to_float16(torch.tensor([1e6]), "k", "latents.npy")


def test_uint8_frames_are_normalised_like_floats(make_vae):
    vae = make_vae()
    frames = torch.randint(0, 256, (2, 3, 5, 16, 16), dtype=torch.uint8)
    from_uint8, _ = lat.encode_videos(vae, frames)
    from_float, _ = lat.encode_videos(vae, frames.float() / 127.5 - 1)
    assert torch.allclose(from_uint8, from_float, atol=1e-6)
