"""Numerics shared by the data-aware projections: statistics of calibration activations X.

X is (tokens, in_features), the inputs of the layer being approximated. The output error of an
approximation Ŵ on them is ‖X (W − Ŵ)ᵀ‖_F² = tr((W − Ŵ) XᵀX (W − Ŵ)ᵀ), so every data-aware
method needs only the (normalised) Gram matrix G = XᵀX / tokens or its diagonal. The module name
starts with an underscore so the format registry does not treat it as a format.
"""

from __future__ import annotations

import torch

# Relative ridge added to G before it is factorised: directions of X weaker than this fraction
# of its average energy are not trusted (they come from too few tokens or rounding).
RIDGE = 1e-6


def gram(X: torch.Tensor) -> torch.Tensor:
    """G = XᵀX / tokens in float64, (in, in): the second moment of the activations."""
    x = X.double()
    return x.T @ x / x.shape[0]


def whitening(X: torch.Tensor) -> torch.Tensor:
    """Upper-triangular L (in, in), float64, with LᵀL = G + λI, λ = RIDGE·tr(G)/in (Cholesky).

    ‖(W − Ŵ)Lᵀ‖_F² = ‖X (W − Ŵ)ᵀ‖_F² / tokens up to the ridge, so problems weighted by X become
    plain Frobenius problems on W Lᵀ. The ridge keeps L invertible when tokens < in or X is
    rank-deficient (then the unseen directions get a small, uniform weight).
    """
    g = gram(X)
    n = g.shape[0]
    ridge = RIDGE * g.diagonal().sum().clamp_min(torch.finfo(torch.float64).tiny) / n
    lower: torch.Tensor = torch.linalg.cholesky(g + ridge * torch.eye(n, dtype=g.dtype, device=g.device))
    return lower.T


def hessian_diag(X: torch.Tensor) -> torch.Tensor:
    """diag(XᵀX) / tokens (in,), float64: the diagonal of the layer-wise Hessian of ‖X(W − Ŵ)ᵀ‖²/2·tokens.

    The weight of column j in the diagonal proxy Σ_ij H_jj (W − Ŵ)_ij² (OBS/Wanda-style scores).
    """
    return X.double().pow(2).mean(0)


def weighted_magnitude(weight: torch.Tensor, X: torch.Tensor | None = None) -> torch.Tensor:
    """Pruning scores |W_ij|, or |W_ij|·√H_jj (float64) with H = ``hessian_diag(X)`` when X is given.

    Keeping the largest scores minimises the diagonal proxy Σ_ij H_jj (W − Ŵ)_ij² under any
    support rule that picks by score (a dropped entry adds exactly its squared score): the
    Wanda score (Sun et al. 2024), the diagonal of the OBS saliency.
    """
    scores = weight.abs()
    if X is None:
        return scores
    return scores.double() * hessian_diag(X).sqrt().to(weight.device)
