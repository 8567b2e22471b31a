"""Distances between feature distributions: Fréchet distance (FID, Heusel et al., 2017) and
kernel inception distance (KID, Bińkowski et al., 2018), in float64 numpy.

Both are computed on features of any extractor (see :mod:`evaluators.fid`); the formulas are
those of the papers and of pytorch-fid / clean-fid, so numbers on Inception features match them.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg

__all__ = ["feature_stats", "frechet_distance", "kid"]


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) of ``features`` (N, D), in float64."""
    feats = np.asarray(features, dtype=np.float64)
    if feats.ndim != 2 or len(feats) < 2:
        raise ValueError(f"need features of shape (N >= 2, D), got {feats.shape}")
    return feats.mean(axis=0), np.cov(feats, rowvar=False).reshape(feats.shape[1], feats.shape[1])


def _sqrtm(a: np.ndarray) -> tuple[np.ndarray, bool]:
    """scipy's matrix square root and whether it can be trusted (finite, small residual)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        root = scipy.linalg.sqrtm(a)
    singular = any(issubclass(w.category, scipy.linalg.LinAlgWarning) for w in caught)
    if not np.all(np.isfinite(root)):
        return root, False
    residual = np.linalg.norm(root @ root - a) / max(np.linalg.norm(a), 1e-300)
    return root, not singular and residual < 1e-6


def _trace_sqrt_psd_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    # tr sqrt(S1 S2) = tr sqrt(S1^1/2 S2 S1^1/2); the right side is symmetric PSD, so eigh is
    # exact and real.  Used only when sqrtm of the product fails even with the eps offset.
    vals, vecs = np.linalg.eigh(sigma1)
    half = (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T
    inner = np.linalg.eigvalsh(half @ sigma2 @ half)
    return float(np.sqrt(np.clip(inner, 0.0, None)).sum())


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, *, eps: float = 1e-6
) -> float:
    """Fréchet distance ``|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^1/2)`` between two Gaussians.

    Float64 throughout.  The matrix square root is scipy's ``sqrtm``; when ``S1 S2`` is
    (nearly) singular, as it is for fewer samples than dimensions or dead ReLU features,
    ``eps * I`` is added to both covariances (pytorch-fid's remedy), and tiny imaginary parts
    from round-off are dropped.  If that still fails, the trace is computed from the symmetric
    form ``S1^1/2 S2 S1^1/2`` instead.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(f"shape mismatch: mu {mu1.shape} / {mu2.shape}, sigma {s1.shape} / {s2.shape}")
    diff = mu1 - mu2
    root, ok = _sqrtm(s1 @ s2)
    if not ok:
        offset = np.eye(d) * eps
        root, ok = _sqrtm((s1 + offset) @ (s2 + offset))
    trace_root: float
    if ok and np.iscomplexobj(root):
        # Round-off makes small imaginary parts; anything larger means sqrtm went astray.
        ok = bool(np.abs(root.imag).max() <= 1e-3 * max(np.abs(root.real).max(), 1e-12))
        root = root.real
    trace_root = float(np.trace(root)) if ok else _trace_sqrt_psd_product(s1, s2)
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * trace_root)


def kid(
    feats_a: np.ndarray,
    feats_b: np.ndarray,
    *,
    subsets: int = 50,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """Kernel inception distance: mean and std over ``subsets`` of the unbiased MMD^2.

    Kernel: the cubic polynomial ``k(x, y) = (x . y / D + 1)^3`` of Bińkowski et al.  Each
    subset draws ``min(subset_size, len(a), len(b))`` rows of each set without replacement,
    from a generator seeded by ``seed``, so the subsets are fixed for a given seed and sizes.
    """
    a, b = np.asarray(feats_a, np.float64), np.asarray(feats_b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"need two feature arrays (N, D) with the same D, got {a.shape} and {b.shape}")
    m = min(subset_size, len(a), len(b))
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got {len(a)} and {len(b)}")
    dim = a.shape[1]
    rng = np.random.default_rng(seed)
    values = np.empty(subsets)
    for i in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        k_xx = (x @ x.T / dim + 1.0) ** 3
        k_yy = (y @ y.T / dim + 1.0) ** 3
        k_xy = (x @ y.T / dim + 1.0) ** 3
        # Unbiased: the diagonals (a sample with itself) are left out of the within-set terms.
        within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
        values[i] = within - 2.0 * k_xy.mean()
    return float(values.mean()), float(values.std())
