"""Variants that have an exact limit reproduce softmax attention there; softmax reproduces timm."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from core.attention import SoftmaxAttention, sdpa_backend, swap_attention
from core.attention.nystrom import iterative_pinv
from tests.helpers import TOKENS


def sdpa_reference(attn, x: torch.Tensor) -> torch.Tensor:
    """The timm module's own projections around plain SDPA."""
    B, N, C = x.shape
    q, k, v = attn.qkv(x).reshape(B, N, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
    return attn.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, N, C))


def test_softmax_swap_reproduces_timm_attention(timm_attn, tokens):
    swapped = swap_attention(timm_attn, "softmax")
    with torch.no_grad():
        assert torch.allclose(swapped(tokens), timm_attn(tokens), atol=1e-5, rtol=0)
    timm_attn.fused_attn = False  # timm's explicit softmax path, not SDPA
    with torch.no_grad():
        assert torch.allclose(swapped(tokens), timm_attn(tokens), atol=1e-5, rtol=0)


def test_softmax_records_the_cpu_flash_kernel(timm_attn, tokens):
    swapped = swap_attention(timm_attn, "softmax")
    assert swapped.last_backend is None
    with torch.no_grad():
        swapped(tokens)
    assert swapped.last_backend == "flash (cpu)"
    q = torch.randn(1, 2, 8, 4, dtype=torch.float16)  # no CPU flash kernel for half precision on every build
    assert sdpa_backend(q, q, q) in ("flash (cpu)", "math")


def test_linformer_with_identity_projections_is_softmax_attention(timm_attn, tokens):
    linformer = swap_attention(timm_attn, "linformer", seq_len=TOKENS, k=TOKENS)
    assert torch.equal(linformer.E, torch.eye(TOKENS)) and torch.equal(linformer.F, torch.eye(TOKENS))
    with torch.no_grad():
        assert torch.allclose(linformer(tokens), sdpa_reference(timm_attn, tokens), atol=1e-4, rtol=0)


def test_nystrom_with_every_token_a_landmark_is_softmax_attention(timm_attn, tokens):
    nystrom = swap_attention(timm_attn, "nystrom", landmarks=TOKENS)
    with torch.no_grad():
        assert torch.allclose(nystrom(tokens), sdpa_reference(timm_attn, tokens), atol=1e-4, rtol=0)


def test_iterative_pinv_converges_to_the_pseudo_inverse():
    a = torch.softmax(torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(0)), dim=-1).double()
    assert torch.allclose(iterative_pinv(a, 30), torch.linalg.pinv(a), atol=1e-6)


def test_lowrank_qkv_at_full_rank_reproduces_timm_attention(timm_attn, tokens):
    full = swap_attention(timm_attn, "lowrank-qkv", rank=64)
    assert isinstance(full, SoftmaxAttention)
    with torch.no_grad():
        assert torch.allclose(full(tokens), timm_attn(tokens), atol=1e-5, rtol=0)


def test_lowrank_qkv_aa_svd_fits_calibration_better_than_svd(timm_attn, tokens):
    with torch.no_grad():
        ref = timm_attn(tokens)
        errors = {m: (swap_attention(timm_attn, "lowrank-qkv", rank=8, method=m, calibration=tokens)(tokens) - ref).norm().item()
                  for m in ("svd", "aa_svd")}
    assert errors["aa_svd"] < errors["svd"]
