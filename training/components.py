"""The parts of a diffusers Wan pipeline (transformer, VAE, text encoder, tokenizer): loading by Hub id or folder,
randomly initialised stand-ins for tests and benchmarks (nothing downloaded), and saving in a pipeline's layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vidalign.errors import VidalignError


@dataclass
class WanComponents:
    """The pieces of a Wan pipeline the trainer uses (text encoder and tokenizer may be freed after encoding)."""

    transformer: Any
    vae: Any
    text_encoder: Any
    tokenizer: Any


def load_components(model: str, revision: str | None = None, dtype: torch.dtype | None = None,
                    transformer_dtype: torch.dtype | None = None, transformer: bool = True) -> WanComponents:
    """Load a diffusers Wan pipeline's transformer, VAE, text encoder and tokenizer by Hub id or folder.

    ``transformer=False`` leaves it out (validation videos of a trainer that holds its own denoiser). Loading
    straight into ``dtype`` (rather than casting afterwards) keeps the modules diffusers marks as
    fp32-only (norms, time embedding) in fp32.
    """
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import AutoConfig, AutoTokenizer, T5EncoderModel, UMT5EncoderModel

    def load(what: str, fn):
        try:
            return fn()
        except (OSError, ValueError) as exc:
            raise VidalignError(f"model_name_or_path={model!r}: cannot load its {what} "
                                f"({' '.join(str(exc).split())[:200]}); give a diffusers Wan pipeline") from None

    denoiser = load("transformer", lambda: WanTransformer3DModel.from_pretrained(
        model, subfolder="transformer", revision=revision, torch_dtype=transformer_dtype or dtype)) if transformer else None
    vae = load("vae", lambda: AutoencoderKLWan.from_pretrained(model, subfolder="vae", revision=revision,
                                                               torch_dtype=dtype))
    tokenizer = load("tokenizer", lambda: AutoTokenizer.from_pretrained(model, subfolder="tokenizer",
                                                                          revision=revision))
    te_cfg = load("text_encoder", lambda: AutoConfig.from_pretrained(model, subfolder="text_encoder",
                                                                     revision=revision))
    te_cls = T5EncoderModel if te_cfg.model_type == "t5" else UMT5EncoderModel
    text_encoder = load("text_encoder", lambda: te_cls.from_pretrained(model, subfolder="text_encoder",
                                                                       revision=revision, dtype=dtype))
    return WanComponents(denoiser, vae, text_encoder, tokenizer)


RANDOM_PRESETS = ("tiny", "wan2.1-1.3b")
_WORDS = ("a an the of on in to and with at video object objects dropping drops falls falling onto table floor ball "
          "cat dog horse bird fish red blue green black white small large playing running jumping").split()


def random_wan_components(preset: str = "tiny", seed: int = 0) -> WanComponents:
    """Randomly initialised Wan components for smoke tests and benchmarks (nothing is downloaded).

    ``tiny``: a few thousand parameters, 4 latent channels; ``wan2.1-1.3b``: the Wan 2.1 T2V 1.3B transformer and
    VAE architectures. Both get a word-level tokenizer and a one-layer UMT5 encoder of the right width (the real
    umT5-XXL is irrelevant to what the benchmarks measure).
    """
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, UMT5Config, UMT5EncoderModel

    if preset not in RANDOM_PRESETS:
        raise VidalignError(f"random Wan preset {preset!r} is unknown; choose one of {', '.join(RANDOM_PRESETS)}")
    torch.manual_seed(seed)
    if preset == "tiny":
        transformer = WanTransformer3DModel(
            patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=4,
            text_dim=16, freq_dim=32, ffn_dim=16, num_layers=2, cross_attn_norm=True,
            qk_norm="rms_norm_across_heads", rope_max_seq_len=32)
        vae = AutoencoderKLWan(base_dim=8, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                               temperal_downsample=[False, True, True], latents_mean=[0.0] * 4,
                               latents_std=[1.0] * 4)
    else:
        transformer = WanTransformer3DModel(
            patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16, out_channels=16,
            text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
            qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024)
        vae = AutoencoderKLWan()  # diffusers' defaults are the Wan 2.1 VAE
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(dict.fromkeys(_WORDS))}}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    text_dim = int(transformer.config.text_dim)
    text_encoder = UMT5EncoderModel(UMT5Config(vocab_size=len(vocab), d_model=text_dim, d_kv=8, d_ff=32,
                                               num_layers=1, num_heads=2, relative_attention_num_buckets=8))
    return WanComponents(transformer, vae, text_encoder, tokenizer)


def save_components(components: WanComponents, folder: str | Path) -> Path:
    """Write components in a diffusers pipeline's subfolder layout, readable by :func:`load_components`."""
    folder = Path(folder)
    for name in ("transformer", "vae", "text_encoder", "tokenizer"):
        getattr(components, name).save_pretrained(folder / name)
    return folder


def _to(module, device, dtype: torch.dtype):
    """Move ``module``; cast only when none of its weights has ``dtype`` yet (a model loaded in bf16 keeps the
    modules diffusers pins to fp32, and casting it again would undo that)."""
    if any(p.dtype == dtype for p in module.parameters()):
        return module.to(device)
    return module.to(device, dtype)


def _base(model):
    """The module behind a DDP/compile wrapper."""
    return getattr(model, "module", model)
