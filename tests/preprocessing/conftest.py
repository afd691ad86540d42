"""Tiny random models and clips for the preprocessing tests, built offline and saved under tmp paths."""

from __future__ import annotations

import numpy as np
import pytest

Z_DIM = 4
TEXT_DIM = 16
WORDS = ("a cat jumps to the left of a box then runs right dog hops on top stone rabbit squirrel "
         "field grassy with wildflowers video object dropping").split()


def moving_frames(t: int = 9, h: int = 64, w: int = 64, seed: int = 0) -> np.ndarray:
    """Smooth moving gradients: H.264 keeps them above 40 dB PSNR, so readers can be compared to the source."""
    rng = np.random.default_rng(seed)
    fx, fy, ft = rng.uniform(0.05, 0.09, 3)
    tt = np.arange(t)[:, None, None, None]
    yy = np.arange(h)[None, :, None, None]
    xx = np.arange(w)[None, None, :, None]
    cc = np.array([0.0, 0.7, 1.4])
    img = 128 + 55 * np.sin(fx * xx + 0.25 * tt + cc) + 45 * np.cos(fy * yy - 0.2 * tt) + 10 * np.sin(ft * tt)
    return np.broadcast_to(img, (t, h, w, 3)).clip(0, 255).astype(np.uint8)


def tiny_wan_vae(z_dim: int = Z_DIM):
    from diffusers import AutoencoderKLWan

    return AutoencoderKLWan(base_dim=3, z_dim=z_dim, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                            temperal_downsample=[False, True, True],
                            latents_mean=[0.1 * i for i in range(z_dim)],
                            latents_std=[1.0 + 0.5 * i for i in range(z_dim)]).eval()


def tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from tokenizers.processors import TemplateProcessing
    from transformers import T5TokenizerFast

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=64, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>")
    tok.train_from_iterator([" ".join(WORDS)] * 4 + WORDS, trainer)
    tok.post_processor = TemplateProcessing(single="$A </s>", special_tokens=[("</s>", tok.token_to_id("</s>"))])
    return T5TokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                           extra_ids=0)


def tiny_text_encoder(vocab_size: int):
    import torch
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(0)
    cfg = UMT5Config(vocab_size=vocab_size, d_model=TEXT_DIM, d_kv=4, d_ff=32, num_layers=1, num_heads=2,
                     relative_attention_num_buckets=8)
    return UMT5EncoderModel(cfg).eval()


def tiny_wan_pipeline():
    import torch
    from diffusers import UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel

    torch.manual_seed(0)
    vae = tiny_wan_vae()
    tokenizer = tiny_tokenizer()
    text_encoder = tiny_text_encoder(len(tokenizer))
    transformer = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8,
                                        in_channels=Z_DIM, out_channels=Z_DIM, text_dim=TEXT_DIM, freq_dim=32,
                                        ffn_dim=16, num_layers=1, cross_attn_norm=True,
                                        qk_norm="rms_norm_across_heads", rope_max_seq_len=32)
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    return WanPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, scheduler=scheduler,
                       transformer=transformer)


@pytest.fixture(scope="session")
def make_vae():
    """Factory of tiny random AutoencoderKLWan (z_dim 4, latents_mean 0.1*i, latents_std 1 + 0.5*i)."""
    return tiny_wan_vae


@pytest.fixture(scope="session")
def make_tokenizer():
    """Factory of a tiny offline-trained Unigram tokenizer wrapped as T5TokenizerFast."""
    return tiny_tokenizer


@pytest.fixture(scope="session")
def make_pipeline():
    """Factory of a tiny random WanPipeline (VAE, 1-layer transformer, umT5, tokenizer, UniPC scheduler)."""
    return tiny_wan_pipeline


@pytest.fixture(scope="session")
def tiny_pipeline_dir(tmp_path_factory):
    """A saved tiny Wan pipeline folder (model_index.json, vae/, text_encoder/, tokenizer/, ...)."""
    path = tmp_path_factory.mktemp("tiny_wan") / "pipe"
    tiny_wan_pipeline().save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def clip_bytes():
    """A 9-frame 64x64 H.264 mp4 and its source frames."""
    from vidalign.media import encode_mp4

    frames = moving_frames()
    return encode_mp4(frames, 16.0, crf=10), frames
