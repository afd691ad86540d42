"""The contract between stages (vidalign.contract): hand-computed values for every name, field and formula."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidalign import contract as C
from vidalign.errors import ConfigError, InputError


def test_training_text_is_caption_else_prompt():
    assert C.training_text({"prompt": "A toy falls.", "caption": "a video of an object dropping"}) == \
        "a video of an object dropping"
    assert C.training_text({"prompt": "A toy falls.", "caption": "  "}) == "A toy falls."
    assert C.training_text({"prompt": "A toy falls.", "caption": None}) == "A toy falls."
    with pytest.raises(InputError, match=r"k1: field 'json.prompt': no caption or prompt"):
        C.training_text({"seed": 1}, "k1")


def test_pair_record_fields_gap_and_weight():
    r = C.pair_record("a cat", 0.8, 0.5, 2.0, prompt_id="p1")
    assert list(r)[:5] == list(C.PAIR_FIELDS) and r["gap"] == pytest.approx(0.3) and r["prompt_id"] == "p1"
    assert C.pair_record("a cat")["gap"] is None and C.pair_record("a cat")["weight"] == 1.0
    assert C.pair_weight(r) == 2.0 and C.pair_weight({"w": 0.5}, "w") == 0.5
    with pytest.raises(InputError, match="json.weight': missing pair weight"):
        C.pair_weight({"prompt": "x"}, where="k")
    with pytest.raises(InputError, match="weight"):
        C.pair_record("a cat", weight=float("nan"))


def test_latent_member_names():
    assert C.latent_members("mp4") == C.latent_members("") == ("latents.npy", "logvar.npy")
    assert C.latent_members("chosen.mp4") == ("chosen_latents.npy", "chosen_logvar.npy")
    assert C.latents_member("chosen") == "chosen_latents.npy" and C.latents_member("c3.mp4") == "c3_latents.npy"


def test_normalisation_numpy_and_torch_agree_with_the_formula():
    norm = {"latents_mean": [1.0, -1.0], "latents_std": [2.0, 4.0], "scaling_factor": None}
    z = np.array([3.0, 3.0], np.float16).reshape(2, 1, 1, 1)
    n = C.normalize_latents(z, norm)
    assert n.dtype == np.float32 and n.ravel().tolist() == [1.0, 1.0]  # (3 − 1)/2, (3 + 1)/4
    zt = torch.full((1, 2, 1, 1, 1), 3.0)  # a batch [B, C, T, h, w]: channels at axis −4
    assert C.normalize_latents(zt, norm).flatten().tolist() == [1.0, 1.0]
    assert torch.allclose(C.denormalize_latents(C.normalize_latents(zt, norm), norm), zt)
    scaled = {"latents_mean": None, "latents_std": None, "scaling_factor": 0.5}
    assert C.normalize_latents(z, scaled).ravel().tolist() == [1.5, 1.5]
    assert C.denormalize_latents(np.float32([[[[1.5]]]]), scaled).ravel().tolist() == [3.0]
    assert C.normalize_latents(z, {"latents_mean": None}).ravel().tolist() == [3.0, 3.0]  # scale 1 when unset
    with pytest.raises(InputError, match="json.latents"):
        C.normalize_latents(z, None)
    with pytest.raises(InputError, match="has 3 entries for 2 latent channels"):
        C.normalize_latents(z, {"latents_mean": [0.0] * 3, "latents_std": [1.0] * 3})


def test_latent_norm_of_a_vae_config():
    class Cfg(dict):
        pass

    vae = type("Vae", (), {"config": Cfg(latents_mean=[0.1, 0.2], latents_std=[1, 2], scaling_factor=None)})()
    assert C.latent_norm(vae) == {"latents_mean": [0.1, 0.2], "latents_std": [1.0, 2.0], "scaling_factor": None}


def test_empty_caption_file_round_trip_and_settings(tmp_path):
    emb = np.arange(6, dtype=np.float32).reshape(3, 2)
    path = C.write_empty_prompt_embeds(tmp_path, torch.from_numpy(emb))
    assert path.name == C.EMPTY_PROMPT_EMBEDS and np.load(path).dtype == np.float16
    np.testing.assert_array_equal(C.load_empty_prompt_embeds(path), emb)
    np.testing.assert_array_equal(C.load_empty_prompt_embeds(path.read_bytes()), emb)

    class Data:  # what a trainer passes: its stream, which reads files at the dataset root
        root = str(tmp_path)

        def read_root_file(self, name):
            p = tmp_path / name
            return p.read_bytes() if p.is_file() else None

        def describe(self):
            return "a test dataset"

    np.testing.assert_array_equal(C.empty_caption_embeds(None, Data(), 0.2), emb)
    assert C.empty_caption_embeds(None, Data(), 0.0) is None and C.empty_caption_embeds("zeros", Data(), 0.2) is None
    np.testing.assert_array_equal(C.empty_caption_embeds(str(path), None, 0.2), emb)
    path.unlink()
    with pytest.raises(ConfigError, match="has no empty_prompt_embeds.npy at its root") as exc:
        C.empty_caption_embeds(None, Data(), 0.2)
    assert "\n" not in str(exc.value)
    with pytest.raises(InputError, match=r"not \[L, D\]"):
        C.load_empty_prompt_embeds(_npy(np.zeros(3, np.float16)))


def _npy(arr) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def test_record_and_lazy_members():
    from vidalign.format import encode_member

    raw = {"__key__": "k", "json": encode_member("json", {"prompt": "x"}), "a.npy": encode_member("a.npy", np.ones(2)),
           "mp4": b"\x00\x01"}
    assert C.record(raw) == {"prompt": "x"} and C.member(raw, "a.npy").tolist() == [1.0, 1.0]
    assert C.member(raw, "mp4") == b"\x00\x01"  # media stay bytes
    row = {"__key__": "k", "prompt": "y", "chosen.npy": np.zeros(1)}  # a datasets row of a Parquet config
    assert C.record(row) == {"prompt": "y"}
