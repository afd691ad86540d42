"""Rewards on hand-made inputs with tiny random reward models (SAM 2, Depth Anything, CLIP) saved and reloaded."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vidalign.errors import ConfigError, VidalignError
from vidalign.training.flow import HornSchunck, build_flow_model
from vidalign.training.rewards import (
    CLIP_MEAN,
    CLIP_STD,
    RewardInputs,
    RewardSpec,
    build_head,
    load_state_dict,
    minmax_normalize,
    normalize,
    resize_center_crop,
    soft_iou,
    to_unit,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ----------------------------------------------------------------------------------------------- tiny models
def _tiny_sam2(path):
    from transformers import Sam2HieraDetConfig, Sam2VideoConfig, Sam2VideoModel, Sam2VisionConfig

    size = 64
    backbone = Sam2HieraDetConfig(hidden_size=8, image_size=size, patch_stride=4, patch_kernel_size=7, patch_padding=3,
                                  blocks_per_stage=[1, 1, 2, 1], embed_dim_per_stage=[8, 16, 32, 64],
                                  num_attention_heads_per_stage=[1, 1, 1, 1], window_size_per_stage=[4, 4, 4, 4],
                                  window_positional_embedding_background_size=[2, 2], global_attention_blocks=[3])
    # SAM 2's memory path hard-codes 64 memory channels and needs fpn width = a multiple > 1 of them
    vision = Sam2VisionConfig(backbone_config=backbone, backbone_channel_list=[64, 32, 16, 8],
                              backbone_feature_sizes=[[16, 16], [8, 8], [4, 4]], fpn_hidden_size=128)
    cfg = Sam2VideoConfig(
        vision_config=vision, image_size=size,
        prompt_encoder_config=dict(hidden_size=128, image_size=size, patch_size=16, mask_input_channels=8),
        mask_decoder_config=dict(hidden_size=128, mlp_dim=64, num_attention_heads=4, iou_head_hidden_dim=32),
        memory_attention_hidden_size=128, memory_attention_num_layers=1, memory_attention_feed_forward_hidden_size=64,
        memory_attention_rope_feat_sizes=[4, 4], memory_encoder_hidden_size=128, memory_encoder_output_channels=64,
        mask_downsampler_embed_dim=128, memory_fuser_embed_dim=128, memory_fuser_intermediate_dim=64, num_maskmem=3)
    torch.manual_seed(0)
    Sam2VideoModel(cfg).save_pretrained(path)
    return str(path)


def _tiny_depth(path):
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    backbone = Dinov2Config(hidden_size=16, num_hidden_layers=4, num_attention_heads=2, intermediate_size=32,
                            patch_size=14, image_size=28, out_indices=[1, 2, 3, 4], reshape_hidden_states=False)
    cfg = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=16, neck_hidden_sizes=[8, 8, 16, 16],
                              fusion_hidden_size=8, head_hidden_size=4, patch_size=14)
    torch.manual_seed(0)
    DepthAnythingForDepthEstimation(cfg).save_pretrained(path)
    return str(path)


def _tiny_clip(path):
    from transformers import CLIPConfig, CLIPModel

    from vidalign.training.reward_trainer import random_wan_components

    tok = random_wan_components("tiny").tokenizer  # a word-level fast tokenizer built offline
    cfg = CLIPConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=16, eos_token_id=1, pad_token_id=0,
                         bos_token_id=None),
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=16),
        projection_dim=8)
    torch.manual_seed(0)
    CLIPModel(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("reward_models")
    return {"sam2": _tiny_sam2(root / "sam2"), "depth": _tiny_depth(root / "depth"), "clip": _tiny_clip(root / "clip"),
            "root": root}


def _frames(b=1, t=4, seed=0, size=32):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, t, 3, size, size, generator=g) * 2 - 1


def _masks(t=4, size=32):
    k = size // 16
    m = torch.zeros(t, 2, size, size, dtype=torch.bool)
    m[:, 0, 10 * k : 14 * k, 1 * k : 5 * k] = True
    for i in range(t):
        m[i, 1, (1 + 2 * i) * k : (5 + 2 * i) * k, 6 * k : 10 * k] = True
    return m


# ----------------------------------------------------------------------------------------------- pure parts
def test_soft_iou_and_minmax_by_hand():
    # oro_seg.py's get_iou: inter / (Σp + Σg − inter + eps), eps = 1e-6
    gt = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    assert float(soft_iou(gt, gt.bool())) == pytest.approx(2 / (2 + 1e-6))  # perfect masks: loss 1 − IoU ≈ 0
    assert float(soft_iou(torch.tensor([[1.0, 0.0], [0.0, 0.0]]), gt)) == pytest.approx(1 / (2 + 1e-6))
    assert float(soft_iou(torch.tensor([[0.5, 0.5], [0.5, 0.0]]), gt)) == pytest.approx(1.0 / (2.5 + 1e-6))
    assert float(soft_iou(torch.zeros(2, 2), torch.zeros(2, 2))) == 0.0  # both empty: 0 / eps = 0, as theirs
    assert float(soft_iou(torch.zeros(2, 2), gt)) == 0.0
    # oro_depth.py: per-frame (d − min) / (max − min) · 255
    d = torch.tensor([[0.0, 2.0], [4.0, 8.0]])
    assert torch.allclose(minmax_normalize(d, 255.0), torch.tensor([[0.0, 63.75], [127.5, 255.0]]))
    assert torch.allclose(minmax_normalize(d), torch.tensor([[0.0, 0.25], [0.5, 1.0]]))
    assert torch.equal(minmax_normalize(torch.full((2, 2), 3.0), 255.0), torch.zeros(2, 2))  # theirs: 0/0


def test_registry_errors_are_one_line():
    with pytest.raises(ConfigError, match="did you mean 'segmentation'") as err:
        RewardSpec.parse({"name": "segmentaton"})
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="not an option of reward 'depth'"):
        RewardSpec.parse({"name": "depth", "threshold": 0.5})
    with pytest.raises(ConfigError, match="weight"):
        RewardSpec.parse({"name": "flow", "weight": -1})
    with pytest.raises(ConfigError, match="head"):
        RewardSpec.parse({"name": "aesthetic"})
    with pytest.raises(ConfigError, match="flow model 'nope' is unknown"):
        build_flow_model("nope")


def test_state_dict_loading_never_unpickles(tmp_path):
    torch.save({"weight": torch.ones(1, 3)}, tmp_path / "ok.pt")
    assert torch.equal(load_state_dict(str(tmp_path / "ok.pt"))["weight"], torch.ones(1, 3))
    torch.save({"weight": torch.ones(1, 3), "obj": HornSchunck()}, tmp_path / "bad.pt")
    with pytest.raises(VidalignError, match="not a plain tensor state dict"):
        load_state_dict(str(tmp_path / "bad.pt"))
    with pytest.raises(VidalignError, match="no such file"):
        load_state_dict(str(tmp_path / "missing.safetensors"))


def test_stacked_linear_head_matches_laion_layout():
    sd = {"layers.0.weight": torch.randn(6, 8), "layers.0.bias": torch.randn(6),
          "layers.2.weight": torch.randn(1, 6), "layers.2.bias": torch.randn(1)}
    head = build_head(sd)
    x = torch.randn(3, 8)
    ref = (x @ sd["layers.0.weight"].T + sd["layers.0.bias"]) @ sd["layers.2.weight"].T + sd["layers.2.bias"]
    assert torch.allclose(head(x), ref, atol=1e-5)
    with pytest.raises(VidalignError, match="unexpected key"):
        build_head({"fc.weight_v": torch.ones(1, 2)})


# ----------------------------------------------------------------------------------------------- flow
def test_horn_schunck_recovers_a_shift_and_identical_frames_give_zero_loss():
    ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")

    def blob(cx):
        return (torch.exp(-((xs - cx) ** 2 + (ys - 16) ** 2) / 32.0) * 2 - 1).expand(1, 3, 32, 32)

    a = blob(14).clone().requires_grad_(True)
    flow = HornSchunck()(a, blob(16))
    inside = torch.exp(-((xs - 15) ** 2 + (ys - 16) ** 2) / 32.0) > 0.3
    assert float(flow[0, 0][inside].mean().detach()) == pytest.approx(2.0, abs=0.3)
    assert abs(float(flow[0, 1][inside].mean().detach())) < 0.2
    flow.abs().mean().backward()
    assert torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0

    reward = RewardSpec.parse({"name": "flow", "model": "horn_schunck"}).build()
    frames = _frames(t=3).requires_grad_(True)
    out = reward(frames, RewardInputs(["x"], [0, 1, 2], gt_frames=frames.detach().clone()))
    assert out.loss.item() == 0.0
    other = reward(frames, RewardInputs(["x"], [0, 1, 2], gt_frames=_frames(t=3, seed=1)))
    other.loss.sum().backward()
    assert other.loss.item() > 0 and torch.isfinite(frames.grad).all() and frames.grad.abs().sum() > 0


def test_raft_needs_torchvision():
    try:
        import torchvision  # noqa: F401
    except ImportError:
        with pytest.raises(VidalignError, match=r"vidalign\[flow\]"):
            build_flow_model("raft_large")
    else:
        pytest.skip("torchvision is installed; RAFT would download weights")


def _raft_keys():
    import json
    from pathlib import Path

    return json.loads((Path(__file__).parent / "data" / "raft_large_keys.json").read_text())


def test_raft_things_weights_map_onto_torchvision_raft_large(tmp_path):
    """PISA's models/raft-things.pth is princeton-vl RAFT saved from nn.DataParallel: every name and shape must land
    on torchvision's raft_large (listed from both codes; checked to give the same flow to 1e-5 with 20 iterations)."""
    from vidalign.training.flow import is_princeton_raft, princeton_to_torchvision

    keys = _raft_keys()
    g = torch.Generator().manual_seed(0)
    sd = {k: torch.randn(shape, generator=g) if shape else torch.tensor(3) for k, shape in keys["princeton"].items()}
    for k in sd:  # a block's norm3 *is* its downsample.1: the saved state dict holds one tensor under both names
        if ".norm3." in k:
            sd[k] = sd[k.replace(".norm3.", ".downsample.1.")]
    torch.save(sd, tmp_path / "raft-things.pth")  # as train.py saves it
    loaded = load_state_dict(str(tmp_path / "raft-things.pth"))  # weights_only: never unpickled
    assert is_princeton_raft(loaded) and not is_princeton_raft(keys["torchvision"])
    mapped = princeton_to_torchvision(loaded)
    assert {k: list(v.shape) for k, v in mapped.items()} == keys["torchvision"]
    assert torch.equal(mapped["update_block.recurrent_block.convgru2.convq.weight"],
                       sd["module.update_block.gru.convq2.weight"])
    assert torch.equal(mapped["context_encoder.layer2.0.downsample.1.running_var"],
                       sd["module.cnet.layer2.0.norm3.running_var"])  # norm3 is downsample.1: the same tensor
    try:
        from torchvision.models.optical_flow import raft_large
    except ImportError:
        return
    raft_large(weights=None).load_state_dict(mapped)  # strict


def test_flow_options_follow_oro_flow():
    from vidalign.training.rewards import FlowOptions

    assert FlowOptions().iterations == 20  # oro_flow.py: model(image1, image2, iters=20, test_mode=True)
    with pytest.raises(ConfigError, match="iterations"):
        RewardSpec.parse({"name": "flow", "iterations": 0})
    with pytest.raises(ConfigError, match="no raft.py"):
        build_flow_model("raft_large", weights="w.pth", code="/nonexistent")
    with pytest.raises(ConfigError, match="takes no weights or code"):
        build_flow_model("horn_schunck", code="RAFT/core")


def test_princeton_raft_code_by_path(tmp_path):
    """With PISA's RAFT/core (VIDALIGN_RAFT_CODE), their network runs on [0, 255] frames with 20 iterations."""
    import argparse
    import os

    code = os.environ.get("VIDALIGN_RAFT_CODE")
    if not code:
        pytest.skip("set VIDALIGN_RAFT_CODE to princeton-vl RAFT's core/ folder to run their network")
    from vidalign.training.flow import _load_princeton_code

    torch.manual_seed(0)
    net = _load_princeton_code(code)(argparse.Namespace(small=False, mixed_precision=False, alternate_corr=False))
    torch.save({"module." + k: v for k, v in net.state_dict().items()}, tmp_path / "raft-things.pth")
    flow = build_flow_model("raft_large", weights=str(tmp_path / "raft-things.pth"), code=code, iterations=3)
    a = _frames(t=1, size=128)[:, 0]
    b = _frames(t=1, seed=1, size=128)[:, 0]
    with torch.no_grad():
        _, want = net.eval()((a + 1) * 127.5, (b + 1) * 127.5, iters=3, test_mode=True)
        got = flow(a, b)
    assert torch.allclose(got, want)


# ----------------------------------------------------------------------------------------------- PISA rewards
def test_segmentation_reward_seeded_sam2(models):
    reward = RewardSpec.parse({"name": "segmentation", "model": models["sam2"]}).build()
    masks = _masks(size=16)  # SAM's low-res masks (image_size / 4) are 16 px here, as the frames
    frames = _frames(t=4, size=16).requires_grad_(True)
    # the seed frame reproduces the GT frame-0 masks: perfect masks give soft IoU ≈ 1 (loss ≈ 0) there
    logits = reward.track(frames[0], masks[0])
    assert logits.shape == (4, 2, 16, 16)
    seed_iou = soft_iou(torch.sigmoid(logits[0]), masks[0])
    assert (seed_iou > 0.99).all()
    out = reward(frames, RewardInputs(["x"], [0, 1, 2, 3], gt_masks=[masks]))
    assert 0.0 <= out.loss.item() <= 1.0 and out.loss.item() == pytest.approx(1 - out.score.item())
    out.loss.sum().backward()
    assert torch.isfinite(frames.grad).all() and frames.grad[:, 1:].abs().sum() > 0  # tracked frames get gradient
    assert all(p.grad is None for p in reward.parameters())
    # oro_seg.py's compute_segloss: mean over frames (frame 0 included) and objects of 1 − get_iou
    with torch.no_grad():
        pd_segments = torch.sigmoid(reward.track(frames[0].detach(), masks[0]))
        inter = (pd_segments * masks.float()).sum(dim=(2, 3))
        union = pd_segments.sum(dim=(2, 3)) + masks.float().sum(dim=(2, 3)) - inter + 1e-6
        theirs = torch.mean(1 - inter / union)
    assert out.loss.item() == pytest.approx(theirs.item(), rel=1e-5)
    later = RewardSpec.parse({"name": "segmentation", "model": models["sam2"], "include_seed_frame": False}).build()
    assert later(frames.detach(), RewardInputs(["x"], [0, 1, 2, 3], gt_masks=[masks])).loss.item() == \
        pytest.approx(torch.mean(1 - (inter / union)[1:]).item(), rel=1e-5)
    last = RewardSpec.parse({"name": "segmentation", "model": models["sam2"], "objects": "last"}).build()
    seeded = last(frames.detach(), RewardInputs(["x"], [0, 1, 2, 3], gt_masks=[masks]))
    assert 0.0 <= seeded.loss.item() <= 1.0
    with pytest.raises(VidalignError, match="ground-truth gt_masks"):
        reward(frames, RewardInputs(["x"], [0, 1, 2, 3]))


def test_depth_reward_identical_is_zero_and_gradient_is_finite(models):
    reward = RewardSpec.parse({"name": "depth", "model": models["depth"], "input_size": 28}).build()
    frames = _frames(t=2).requires_grad_(True)
    same = reward(frames, RewardInputs(["x"], [0, 1], gt_frames=frames.detach().clone()))
    assert same.loss.item() == 0.0
    diff = reward(frames, RewardInputs(["x"], [0, 1], gt_frames=_frames(t=2, seed=5)))
    assert diff.loss.item() > 0
    diff.loss.sum().backward()
    assert torch.isfinite(frames.grad).all() and frames.grad.abs().sum() > 0
    pred = reward.depth(frames.detach()[0])  # at the frames' size, per frame min-max normalised to [0, 255]
    assert pred.shape == (2, 32, 32) and torch.allclose(pred.amin((-2, -1)), torch.zeros(2), atol=1e-4)
    assert torch.allclose(pred.amax((-2, -1)), torch.full((2,), 255.0), atol=1e-3)
    # oro_depth.py's compute_depth / compute_depth_loss, transcribed (input_size 28 for the tiny model, not 518)
    from transformers import AutoModelForDepthEstimation

    model = AutoModelForDepthEstimation.from_pretrained(models["depth"]).eval()

    def compute_depth(video):  # [b, f, c, h, w] in [0, 255]
        b, f, _, h, w = video.shape
        x = video.flatten(0, 1).float() / 255
        x = F.interpolate(x, size=(28, 28), mode="bicubic", align_corners=False)
        x = normalize(x, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
        depth = model(pixel_values=x).predicted_depth
        depth = F.interpolate(depth[:, None], (h, w), mode="bilinear", align_corners=False).squeeze(1)
        mx, mn = depth.amax(dim=(1, 2), keepdim=True), depth.amin(dim=(1, 2), keepdim=True)
        return ((depth - mn) / (mx - mn) * 255.0).reshape(b, f, h, w)

    other = _frames(t=2, seed=5)
    with torch.no_grad():
        theirs = F.mse_loss(compute_depth((frames.detach() + 1) * 127.5), compute_depth((other + 1) * 127.5))
        ours = reward(frames.detach(), RewardInputs(["x"], [0, 1], gt_frames=other)).loss
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-4)
    sim = RewardSpec.parse({"name": "depth", "model": models["depth"], "input_size": 28,
                            "target": "simulation"}).build()
    out = sim(frames.detach(), RewardInputs(["x"], [0, 1], gt_depth=torch.rand(1, 2, 32, 32) + 1))
    assert torch.isfinite(out.loss).all() and out.loss.item() > 0


# ----------------------------------------------------------------------------------------------- VADER rewards
def _save_linear_head(path, dim=8):
    from safetensors.torch import save_file

    torch.manual_seed(1)
    sd = {"weight": torch.randn(1, dim), "bias": torch.randn(1)}
    save_file(sd, str(path))
    return sd


def test_aesthetic_reward_matches_hand_computation(models):
    from transformers import CLIPModel

    sd = _save_linear_head(models["root"] / "head.safetensors")
    reward = RewardSpec.parse({"name": "aesthetic", "clip_model": models["clip"],
                               "head": str(models["root"] / "head.safetensors")}).build()
    frames = _frames(b=2, t=2, size=40).requires_grad_(True)
    out = reward(frames, RewardInputs(["a cat", "a dog"], [0, 1]))
    clip = CLIPModel.from_pretrained(models["clip"]).eval()
    with torch.no_grad():
        x = normalize(resize_center_crop(to_unit(frames.reshape(4, 3, 40, 40)), 32), CLIP_MEAN, CLIP_STD)
        feats = F.normalize(clip.get_image_features(pixel_values=x).pooler_output, dim=-1)
        ref = (feats @ sd["weight"].T + sd["bias"]).reshape(2, 2).mean(1)
    assert torch.allclose(out.score, ref, atol=1e-5) and torch.allclose(out.loss, -ref, atol=1e-5)
    out.loss.sum().backward()
    assert torch.isfinite(frames.grad).all() and frames.grad.abs().sum() > 0
    targeted = RewardSpec.parse({"name": "aesthetic", "clip_model": models["clip"], "target": 10.0,
                                 "head": str(models["root"] / "head.safetensors")}).build()
    assert torch.allclose(targeted(frames.detach(), RewardInputs(["a", "b"], [0, 1])).loss, (ref - 10).abs(),
                          atol=1e-5)
    # VADER's aesthetic_loss_fn: Resize((224, 224)) squashes the frame to the tower's square; loss |s − 10| · 0.1
    vader = RewardSpec.parse({"name": "aesthetic", "clip_model": models["clip"], "target": 10.0, "loss_scale": 0.1,
                              "resize": "squash", "head": str(models["root"] / "head.safetensors")}).build()
    wide = _frames(b=1, t=1, size=40)[..., :30]  # a 40×30 frame: crop and squash differ
    with torch.no_grad():
        x = F.interpolate(to_unit(wide.reshape(1, 3, 40, 30)), size=(32, 32), mode="bilinear", align_corners=False,
                          antialias=True)
        feats = F.normalize(clip.get_image_features(pixel_values=normalize(x, CLIP_MEAN, CLIP_STD)).pooler_output,
                            dim=-1)
        s_ref = (feats @ sd["weight"].T + sd["bias"]).reshape(1)
    got = vader(wide, RewardInputs(["a"], [0]))
    assert torch.allclose(got.score, s_ref, atol=1e-5) and torch.allclose(got.loss, 0.1 * (s_ref - 10).abs(), atol=1e-5)
    with pytest.raises(VidalignError, match="resize"):
        RewardSpec.parse({"name": "aesthetic", "head": "h.pt", "resize": "stretch"})


def test_clip_score_and_preference_rewards(models):
    from transformers import AutoTokenizer, CLIPModel

    frames = _frames(b=2, t=1).requires_grad_(True)
    prompts = ["a red ball", "a cat playing"]
    clip = CLIPModel.from_pretrained(models["clip"]).eval()
    tok = AutoTokenizer.from_pretrained(models["clip"])
    with torch.no_grad():
        img = clip.get_image_features(pixel_values=normalize(to_unit(frames[:, 0]), CLIP_MEAN, CLIP_STD)).pooler_output
        t = tok(prompts, padding="max_length", max_length=16, truncation=True, return_tensors="pt")
        txt = clip.get_text_features(input_ids=t.input_ids, attention_mask=t.attention_mask).pooler_output
        cos = (F.normalize(img, dim=-1) * F.normalize(txt, dim=-1)).sum(-1)
    score = RewardSpec.parse({"name": "clip_score", "clip_model": models["clip"]}).build()
    out = score(frames, RewardInputs(prompts, [0]))
    assert torch.allclose(out.score, cos, atol=1e-5) and torch.allclose(out.loss, 1 - cos, atol=1e-5)
    out.loss.sum().backward()
    assert torch.isfinite(frames.grad).all() and frames.grad.abs().sum() > 0
    pref = RewardSpec.parse({"name": "preference", "clip_model": models["clip"]}).build()
    p = pref(frames.detach(), RewardInputs(prompts, [0]))
    assert torch.allclose(p.score, clip.logit_scale.exp().detach() * cos, atol=1e-4)
    assert torch.allclose(p.loss, -p.score)
    torch.save({"weight": torch.eye(8), "bias": torch.zeros(8)}, models["root"] / "proj.pt")  # identity head
    headed = RewardSpec.parse({"name": "preference", "clip_model": models["clip"], "scale": 2.0,
                               "head": str(models["root"] / "proj.pt")}).build()
    assert torch.allclose(headed(frames.detach(), RewardInputs(prompts, [0])).score, 2 * cos, atol=1e-5)
