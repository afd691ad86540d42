"""Full-reference image quality: PSNR and SSIM (Wang, Bovik, Sheikh & Simoncelli, IEEE TIP 2004).

SSIM follows the paper's reference setting: an 11×11 Gaussian window (σ = 1.5, normalised), K1 = 0.01,
K2 = 0.03, dynamic range L = 255 for uint8 images, population (not sample) statistics; colour images are
scored per channel and averaged, and the mean is taken over the "valid" region where the window fits
(as the paper's Matlab code does), so borders do not inflate the score.
"""

from __future__ import annotations

import numpy as np


def _as_float(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    return a.astype(np.float64), b.astype(np.float64)


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """``10 log10(L² / MSE)`` in dB (``inf`` for identical images)."""
    x, y = _as_float(a, b)
    mse = float(np.mean((x - y) ** 2))
    return float("inf") if mse == 0 else float(10.0 * np.log10(data_range ** 2 / mse))


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    r = np.arange(size) - (size - 1) / 2
    g = np.exp(-(r ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def _filter_valid(img: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable correlation with ``g`` over the last two axes, keeping only full-window positions."""
    k = len(g)
    rows = np.lib.stride_tricks.sliding_window_view(img, k, axis=-2) @ g
    return np.lib.stride_tricks.sliding_window_view(rows, k, axis=-1) @ g


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 255.0, window: int = 11, sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03) -> float:
    """Mean SSIM of two images ``[H, W]`` or ``[H, W, C]`` (channels scored separately, then averaged)."""
    x, y = _as_float(a, b)
    if x.ndim == 3:
        x, y = np.moveaxis(x, -1, 0), np.moveaxis(y, -1, 0)
    elif x.ndim != 2:
        raise ValueError(f"expected [H, W] or [H, W, C] images, got shape {x.shape}")
    if min(x.shape[-2:]) < window:
        raise ValueError(f"images of {x.shape[-2:]} are smaller than the {window}×{window} window")
    g = _gaussian_window(window, sigma)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    mx, my = _filter_valid(x, g), _filter_valid(y, g)
    sxx = _filter_valid(x * x, g) - mx * mx
    syy = _filter_valid(y * y, g) - my * my
    sxy = _filter_valid(x * y, g) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return float(s.mean())


__all__ = ["psnr", "ssim"]
