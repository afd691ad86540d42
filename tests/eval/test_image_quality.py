import math

import numpy as np
import pytest

from vidalign.eval.image_quality import psnr, ssim


def test_psnr_hand_values():
    a = np.zeros((10, 10), np.uint8)
    b = a.copy()
    b[3, 4] = 255  # MSE = 255² / 100 → PSNR = 10 log10(100) = 20 dB
    assert psnr(a, b) == pytest.approx(20.0)
    assert psnr(a, a) == math.inf
    assert psnr(np.zeros(4), np.full(4, 0.1), data_range=1.0) == pytest.approx(20.0)


def test_ssim_of_constant_images_is_the_luminance_term():
    # no variance: SSIM = (2ab + C1) / (a² + b² + C1) with C1 = (0.01·255)² = 6.5025
    a, b = np.full((16, 16), 100.0), np.full((16, 16), 110.0)
    assert ssim(a, b) == pytest.approx(22006.5025 / 22106.5025, rel=1e-12)
    assert ssim(a, a) == pytest.approx(1.0)


def test_ssim_single_window_matches_the_formula():
    rng = np.random.default_rng(0)
    x, y = rng.uniform(0, 255, (11, 11)), rng.uniform(0, 255, (11, 11))
    g = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5 ** 2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    mx, my = (w * x).sum(), (w * y).sum()
    vx, vy = (w * (x - mx) ** 2).sum(), (w * (y - my) ** 2).sum()
    cxy = (w * (x - mx) * (y - my)).sum()
    c1, c2 = 6.5025, 58.5225
    want = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    assert ssim(x, y) == pytest.approx(want, rel=1e-10)


def test_ssim_colour_is_the_channel_mean_and_orders_noise():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (32, 32, 3)).astype(np.uint8)
    noisy = np.clip(img + rng.normal(0, 10, img.shape), 0, 255).astype(np.uint8)
    noisier = np.clip(img + rng.normal(0, 40, img.shape), 0, 255).astype(np.uint8)
    per_channel = np.mean([ssim(img[..., c], noisy[..., c]) for c in range(3)])
    assert ssim(img, noisy) == pytest.approx(per_channel)
    assert 1.0 > ssim(img, noisy) > ssim(img, noisier)
    assert ssim(img, 255 - img) < 0  # anti-correlated structure
    with pytest.raises(ValueError):
        ssim(img, img[:16])
    with pytest.raises(ValueError):
        ssim(img[:8, :8], img[:8, :8])
