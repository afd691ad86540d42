"""Each training objective against a hand computation of SPEC's formulas on fixed tensors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vidalign.training import losses as L


def _softplus(x: float) -> float:  # −log σ(z) = log(1 + e^{−z}) with z = −x
    return math.log1p(math.exp(x))


# fixed per-sample errors: s = e_ref − e → s_w = [0.1, 0.0], s_l = [0.0, −0.3]
E_W = torch.tensor([0.5, 0.2])
E_L = torch.tensor([0.3, 0.4])
R_W = torch.tensor([0.6, 0.2])
R_L = torch.tensor([0.3, 0.1])


def test_sigmoid_dpo_matches_hand_computation():
    out = L.diffusion_dpo_loss(E_W, E_L, R_W, R_L, beta=2.0)
    # h = s_w − s_l = [0.1, 0.3]; z = βh = [0.2, 0.6]; loss = log(1 + e^{−z})
    expected = [_softplus(-0.2), _softplus(-0.6)]
    assert torch.allclose(out.losses, torch.tensor(expected), atol=1e-6)
    assert out.loss.item() == pytest.approx(sum(expected) / 2, abs=1e-6)
    assert torch.allclose(out.chosen_rewards, torch.tensor([0.2, 0.0]), atol=1e-6)
    assert torch.allclose(out.rejected_rewards, torch.tensor([0.0, -0.6]), atol=1e-6)


def test_spatialalign_clip_at_five():
    # β = 100: z = [10, 30] clipped to [5, 5]; with the loser better: z = −30 → −5
    out = L.diffusion_dpo_loss(E_W, E_L, R_W, R_L, beta=100.0, clip=5.0)
    assert torch.allclose(out.losses, torch.tensor([_softplus(-5.0)] * 2), atol=1e-6)
    out = L.diffusion_dpo_loss(E_L, E_W, R_L, R_W, beta=100.0, clip=5.0)  # swap: h = [−0.1, −0.3]
    assert torch.allclose(out.losses, torch.tensor([_softplus(5.0)] * 2), atol=1e-6)


def test_videodpo_formula_with_weights():
    beta, w = 5000.0, torch.tensor([2.0, 0.5])
    ew, el, rw, rl = (torch.tensor([1e-3, 2e-3]), torch.tensor([1.5e-3, 1e-3]),
                      torch.tensor([1.2e-3, 1.9e-3]), torch.tensor([1.4e-3, 1.2e-3]))
    out = L.videodpo_loss(ew, el, rw, rl, beta=beta, weights=w)
    expected = []
    for i in range(2):
        inner = -0.5 * beta * ((ew[i] - el[i]) - (rw[i] - rl[i])).item()
        expected.append(w[i].item() * -math.log(1 / (1 + math.exp(-inner))))
    assert out.loss.item() == pytest.approx(sum(expected) / 2, rel=1e-4)


def test_ipo_and_hinge():
    h = torch.tensor([0.1, 0.3])  # s_w − s_l for the fixed errors
    out = L.diffusion_dpo_loss(E_W, E_L, R_W, R_L, beta=2.0, loss_type="ipo")
    assert torch.allclose(out.losses, (h - 0.25) ** 2, atol=1e-6)  # 1/(2β) = 0.25
    out = L.diffusion_dpo_loss(E_W, E_L, R_W, R_L, beta=2.0, loss_type="hinge")
    assert torch.allclose(out.losses, torch.tensor([0.8, 0.4]), atol=1e-6)  # max(0, 1 − 2h)
    with pytest.raises(ValueError):
        L.diffusion_dpo_loss(E_W, E_L, R_W, R_L, beta=2.0, loss_type="kto")
    with pytest.raises(ValueError):
        L.diffusion_dpo_loss(E_W, E_L, R_W, R_L, beta=0.0)


def test_dpo_is_log2_when_policy_equals_reference():
    e = torch.rand(4)
    for scale in (1.0, 0.5):
        out = L.diffusion_dpo_loss(e, e.flip(0), e, e.flip(0), beta=5000.0, logit_scale=scale, clip=5.0)
        assert out.loss.item() == pytest.approx(math.log(2), abs=1e-7)


def test_zeroth_order_reg_and_mse():
    pw, rw = torch.zeros(1, 2), torch.tensor([[1.0, 3.0]])  # mean sq = 5
    pl, rl = torch.ones(1, 2), torch.tensor([[1.0, 2.0]])  # mean sq = 0.5
    assert L.zeroth_order_reg(pw, rw, pl, rl).item() == pytest.approx(0.5 * (5 + 0.5))
    pred, target = torch.tensor([[[1.0, 2.0]], [[0.0, 0.0]]]), torch.tensor([[[0.0, 0.0]], [[2.0, 0.0]]])
    assert torch.allclose(L.per_sample_mse(pred, target), torch.tensor([2.5, 2.0]))
    mask = torch.tensor([[[0.0, 1.0]]])
    assert torch.allclose(L.per_sample_mse(pred, target, mask), torch.tensor([4.0, 0.0]))
    total, parts = L.spatialalign_loss(E_W, E_L, R_W, R_L, reg=torch.tensor(0.4), beta=2.0)
    assert total.item() == pytest.approx(parts.loss.item() + 0.2)


def test_flow_and_eps_targets():
    x0, eps, s = torch.full((2, 1, 2), 2.0), torch.full((2, 1, 2), -1.0), torch.tensor([0.25, 1.0])
    xt = L.add_noise_flow(x0, eps, s)
    assert torch.allclose(xt[0], torch.full((1, 2), 0.75 * 2 - 0.25)) and torch.allclose(xt[1], eps[1])
    assert torch.allclose(L.flow_matching_target(x0, eps), torch.full((2, 1, 2), -3.0))
    assert L.eps_target(x0, eps) is eps
    ab = L.ddpm_alphas_cumprod(10, 0.1, 0.2, "linear")
    assert ab[0].item() == pytest.approx(0.9) and ab[1].item() == pytest.approx(0.9 * (1 - (0.1 + 0.1 / 9)))
    t = torch.tensor([0, 1])
    xt = L.add_noise_ddpm(x0.double(), eps.double(), ab, t)
    assert xt[0, 0, 0].item() == pytest.approx(math.sqrt(0.9) * 2 - math.sqrt(0.1))
    v = L.v_target(x0.double(), eps.double(), ab, t)
    assert v[0, 0, 0].item() == pytest.approx(-math.sqrt(0.9) - math.sqrt(0.1) * 2)


def test_shifted_schedule_matches_diffusers():
    from diffusers import FlowMatchEulerDiscreteScheduler

    sched = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=5.0)
    ours = L.shifted_sigmas(1000, 5.0)
    assert torch.allclose(ours, sched.sigmas[:1000].float(), atol=1e-5)
    assert L.shift_sigma(0.5, 5.0) == pytest.approx(2.5 / 3.0)
    assert L.shift_sigma(0.3, 1.0) == pytest.approx(0.3)


def test_timestep_samplers():
    g = torch.Generator().manual_seed(3)
    s = L.sample_timesteps("logit_normal", 1000, g, logit_mean=0.5, logit_std=2.0)
    ref = torch.sigmoid(torch.randn(1000, generator=torch.Generator().manual_seed(3)) * 2.0 + 0.5)
    assert torch.equal(s, ref)
    grid = set(L.shifted_sigmas(1000, 5.0).tolist())
    sh = L.sample_timesteps("shifted", 200, torch.Generator().manual_seed(0), shift=5.0)
    assert all(v in grid for v in sh.tolist()) and sh.mean() > 0.6  # shift 5 favours noisy times
    u = L.sample_timesteps("uniform", 1000, torch.Generator().manual_seed(0))
    assert 0 <= u.min() and u.max() < 1 and abs(u.mean().item() - 0.5) < 0.05
    assert L.sigma_to_model_timestep(torch.tensor([0.5])).item() == 500.0
    t = L.sample_discrete_timesteps(100, 10, torch.Generator().manual_seed(0))
    assert t.min() >= 0 and t.max() <= 9
    with pytest.raises(ValueError):
        L.sample_timesteps("cosine", 2)


def test_videodpo_pair_weights():
    sw, sl = [0.50, 0.52], [0.30, 0.50]
    # histogram of [0.50, 0.52, 0.30, 0.50]: bin 50 → 1/2, 52 → 1/4, 30 → 1/4; β = 1/2
    w = L.videodpo_pair_weights(sw, sl)
    assert np.allclose(w, [0.5 / math.sqrt(0.5 * 0.25)] * 2)
    assert np.allclose(L.videodpo_pair_weights(sw, sl, alpha=0.0), 1.0)
    assert np.allclose(L.videodpo_pair_weights(sw, sl, mode="code"), [0.72 / 0.15, 0.72 / 0.26])
    w2 = L.videodpo_pair_weights(sw, sl, all_scores=[0.5, 0.5, 0.52, 0.3, 0.3, 0.3], beta=1.0, alpha=2.0)
    assert w2[0] == pytest.approx((1.0 / math.sqrt((2 / 6) * (3 / 6))) ** 2)


def test_videodpo_released_loss_is_per_latent_column():
    """ddpm3d.py: errors .mean(dim=[1, 2, 3]) of [2B, C, T, H, W] → one per column (W); logsigmoid per column."""
    # hand: β = 2, ½-scaled. Column errors w = [1, 3], l = [2, 2], ref = [2, 2] for both:
    # s_w = [1, −1], s_l = [0, 0] → z = ½·2·(s_w − s_l) = [1, −1] → mean(log(1+e^−1), log(1+e)) = 0.81326…
    ew, el = torch.tensor([[1.0, 3.0]]), torch.tensor([[2.0, 2.0]])
    ref = torch.tensor([[2.0, 2.0]])
    col = L.diffusion_dpo_loss(ew, el, ref, ref, beta=2.0, logit_scale=0.5)
    want = (math.log1p(math.exp(-1)) + math.log1p(math.exp(1))) / 2
    assert col.loss.item() == pytest.approx(want) and col.losses.shape == (1,)
    # the paper's per-sample form on the same errors: e_w = 2 = e_ref → log 2
    per_sample = L.diffusion_dpo_loss(ew.mean(1), el.mean(1), ref.mean(1), ref.mean(1), beta=2.0, logit_scale=0.5)
    assert per_sample.loss.item() == pytest.approx(math.log(2))

    # against their lines, transcribed: random 5-D latents, per-pair weights (their dupfactor)
    g = torch.Generator().manual_seed(0)
    b, shape = 2, (3, 4, 5, 6)
    target = torch.randn(2 * b, *shape, generator=g)
    pred, ref_pred = target + 0.3 * torch.randn(2 * b, *shape, generator=g), target + 0.3 * torch.randn(
        2 * b, *shape, generator=g)
    factor = torch.tensor([1.0, 0.5])
    model_losses = (pred - target).pow(2).mean(dim=[1, 2, 3])
    model_losses_w, model_losses_l = model_losses.chunk(2)
    ref_losses = (ref_pred - target).pow(2).mean(dim=[1, 2, 3])
    ref_losses_w, ref_losses_l = ref_losses.chunk(2)
    inside_term = -0.5 * 5000.0 * ((model_losses_w - model_losses_l) - (ref_losses_w - ref_losses_l))
    theirs = (-1 * factor[:, None] * F.logsigmoid(inside_term)).mean()
    err = L.denoising_errors(pred, target, reduction="column")
    ref_err = L.denoising_errors(ref_pred, target, reduction="column")
    assert err.shape == (2 * b, 6)
    ours = L.diffusion_dpo_loss(err[:b], err[b:], ref_err[:b], ref_err[b:], 5000.0, logit_scale=0.5, weights=factor)
    assert ours.loss.item() == pytest.approx(theirs.item(), rel=1e-6)
    # a mask that drops latent frame 0 weights the column mean the same way as the per-sample one
    mask = torch.ones(1, 1, 4, 1, 1)
    mask[:, :, 0] = 0
    np.testing.assert_allclose(L.per_column_mse(pred, target, mask).numpy(),
                               ((pred - target)[:, :, 1:] ** 2).mean(dim=[1, 2, 3]).numpy(), rtol=1e-6)


def test_videocrafter2_scale_arr_and_scaled_noising():
    # VideoCrafter2 (use_scale, scale_b 0.7, mid_step 400, their default fix_scale_bug False)
    arr = L.videocrafter_scale_arr(1000, 1.0, 0.7, 400)
    assert arr.shape == (1400,) and arr[0] == 1.0 and abs(float(arr[399]) - 0.7) < 1e-7
    assert abs(float(arr[200]) - (1.0 - 0.3 * 200 / 399)) < 1e-6 and (arr[400:] == arr[-1]).all()
    assert L.videocrafter_scale_arr(1000, 1.0, 0.7, 400, fix_scale_bug=True).shape == (1000,)
    ab = L.ddpm_alphas_cumprod(1000)
    x0, eps, t = torch.full((2, 1, 1, 1, 1), 2.0), torch.full((2, 1, 1, 1, 1), -1.0), torch.tensor([0, 999])
    xt = L.add_noise_ddpm(x0, eps, ab, t, arr)
    for i, (ti, s) in enumerate(((0, 1.0), (999, 0.7))):
        want = float(ab[ti].sqrt()) * s * 2.0 - float((1 - ab[ti]).sqrt())
        assert abs(float(xt[i]) - want) < 1e-6
    assert torch.allclose(L.add_noise_ddpm(x0, eps, ab, t), L.add_noise_ddpm(x0, eps, ab, t, torch.ones(1000)))
