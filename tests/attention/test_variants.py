"""Every variant: the registry, shapes, gradients, swapping into real ViTs, and the errors users see."""
from __future__ import annotations

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from timm.layers import Attention

from core.attention import AttentionVariant, attention_paths, list_variants, swap_attention, swap_model, variant_options
from core.errors import RankscopeError
from core.models import create_model
from tests.helpers import TOKENS

VARIANTS = list_variants()


def test_registry_lists_every_variant_with_its_options():
    assert VARIANTS == ["softmax", "lowrank-qkv", "linformer", "nystrom", "performer", "nmf", "pnmf", "ntf"]
    assert variant_options("softmax") == {}
    assert variant_options("nmf") == {"rank": 8, "steps": 6, "one_step": True, "readout": 0}
    assert variant_options("linformer") == {"k": 32}


def test_unknown_names_and_options_are_refused_with_the_allowed_ones(timm_attn):
    with pytest.raises(RankscopeError, match=r"unknown attention variant 'nfm'.*did you mean: .*nmf.*known: softmax"):
        swap_attention(timm_attn, "nfm")
    with pytest.raises(RankscopeError, match=r"nmf takes no option rnak \(did you mean: rank\?\); options: rank, steps, one_step, readout"):
        swap_attention(timm_attn, "nmf", rnak=4)
    with pytest.raises(RankscopeError, match=r"nmf: rank must be an integer of at least 1, got 0"):
        swap_attention(timm_attn, "nmf", rank=0)
    with pytest.raises(RankscopeError, match=r"linformer is sized by the sequence length"):
        swap_attention(timm_attn, "linformer")
    with pytest.raises(RankscopeError, match=r"only a timm Attention can be swapped, got a nmf attention variant"):
        swap_attention(swap_attention(timm_attn, "nmf"), "softmax")


def test_swapping_leaves_the_original_untouched(timm_attn, tokens):
    before = {k: v.clone() for k, v in timm_attn.state_dict().items()}
    for name in VARIANTS:
        new = swap_attention(timm_attn, name, seq_len=TOKENS)
        assert not any(p is q for p in new.parameters() for q in timm_attn.parameters())
        with torch.no_grad():
            next(new.parameters()).add_(1.0)
    assert all(torch.equal(before[k], v) for k, v in timm_attn.state_dict().items())


@pytest.mark.parametrize("name", VARIANTS)
def test_gradients_reach_every_trainable_parameter(name, timm_attn, tokens):
    module = swap_attention(timm_attn, name, seq_len=TOKENS).train()
    module(tokens).square().mean().backward()
    params = dict(module.named_parameters())
    assert params
    for pname, p in params.items():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, pname


@settings(max_examples=15, deadline=None)
@given(batch=st.integers(1, 3), tokens=st.integers(2, 40), heads=st.integers(1, 4), head_dim=st.integers(1, 8),
       name=st.sampled_from(VARIANTS))
def test_every_variant_maps_tokens_to_tokens(batch, tokens, heads, head_dim, name):
    dim = heads * head_dim
    assume(name != "lowrank-qkv" or dim >= 2)  # a width-1 projection has rank 1: nothing to truncate (svd refuses it)
    attn = Attention(dim, heads, qkv_bias=True).eval()
    hyper = {"rank": min(dim, 4)} if name == "lowrank-qkv" else {"k": min(tokens, 8)} if name == "linformer" else {}
    module = swap_attention(attn, name, seq_len=tokens, **hyper)
    with torch.no_grad():
        out = module(torch.randn(batch, tokens, dim))
    assert out.shape == (batch, tokens, dim)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("model_name, images", [("fmnist-vit", (2, 1, 28, 28)),
                                                pytest.param("timm:vit_tiny_patch16_224", (1, 3, 224, 224), marks=pytest.mark.slow)])
def test_every_variant_swaps_into_a_vit_and_runs(model_name, images):
    model, _ = create_model(model_name)
    model.eval()
    x = torch.randn(images)
    paths = attention_paths(model)
    assert len(paths) == len(model.blocks)
    for name in VARIANTS:
        swapped = swap_model(model, name)
        assert [p for p in attention_paths(swapped)] == paths
        assert all(isinstance(swapped.get_submodule(p), AttentionVariant) for p in paths)
        with torch.no_grad():
            out = swapped(x)
        assert out.shape == (images[0], model.num_classes) and torch.isfinite(out).all(), name
    assert all(isinstance(model.get_submodule(p), Attention) for p in paths)  # the original is untouched


def test_softmax_swap_keeps_fmnist_vit_predictions():
    model, _ = create_model("fmnist-vit")
    model.eval()
    x = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(swap_model(model, "softmax")(x), model(x), atol=1e-4)


@pytest.mark.parametrize("name", ["nmf", "pnmf", "ntf"])
def test_read_out_tokens_are_the_softmax_attention_of_their_own_queries(name, timm_attn, tokens):
    """With ``readout=1`` the first token's output is exactly the dense attention's; the others are the factorization's."""
    with torch.no_grad():
        dense = swap_attention(timm_attn, "softmax").eval()(tokens)
        plain = swap_attention(timm_attn, name).eval()(tokens)
        read = swap_attention(timm_attn, name, readout=1).eval()(tokens)
    torch.testing.assert_close(read[:, :1], dense[:, :1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(read[:, 1:], plain[:, 1:], atol=1e-6, rtol=1e-6)
    module = swap_attention(timm_attn, name, readout=1).train()
    module(tokens).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())  # the read-out's q/k too
