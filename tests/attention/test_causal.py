"""The causal variants in a language model: causality, exactness, the KV cache, refusals, and the original left alone."""
from __future__ import annotations

import pytest
import torch

from core.attention import (
    NOT_CAUSAL,
    CausalPerformerAttention,
    attention_paths,
    causal_key_shift,
    causal_linear_attention,
    causal_mask,
    causal_variants,
    get_causal_variant,
    list_variants,
    model_variants,
    swap_attention,
    swap_model,
    variant_options,
)
from core.attention.performer import positive_features
from core.errors import RankscopeError
from core.models.language import CausalLM
from core.options import keyword_defaults
from tests.helpers import tiny_llama

VOCAB, WIDTH, HEADS, KV_HEADS, LAYERS = 64, 32, 4, 2, 2
CAUSAL = causal_variants()
# Options that make lowrank-qkv exact on the tiny model (full rank is its width) and keep the others at their defaults.
EXACT = {"lowrank-qkv": {"rank": WIDTH}}


@pytest.fixture(scope="module")
def lm() -> CausalLM:
    """A seeded 2-layer LlamaForCausalLM with grouped-query heads (4 query heads on 2 key/value heads), eval mode."""
    return CausalLM(tiny_llama(vocab_size=VOCAB, hidden_size=WIDTH, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                               num_key_value_heads=KV_HEADS, tie_word_embeddings=False)).eval()


@pytest.fixture
def ids() -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, 16), generator=torch.Generator().manual_seed(1))


def test_the_causal_variants_and_their_options_are_the_timm_ones():
    assert CAUSAL == ["softmax", "lowrank-qkv", "performer"]
    assert set(CAUSAL) | set(NOT_CAUSAL) == set(list_variants())
    for name in CAUSAL:
        assert keyword_defaults(get_causal_variant(name).__init__) == variant_options(name)


def test_model_variants_offers_only_the_causal_ones_for_a_language_model(lm, timm_attn):
    assert model_variants(lm) == CAUSAL
    assert model_variants(torch.nn.Sequential(timm_attn)) == list_variants()
    assert attention_paths(lm) == [f"model.layers.{i}.self_attn" for i in range(LAYERS)]


@pytest.mark.parametrize("variant", CAUSAL)
def test_no_position_reads_a_later_token(lm, ids, variant):
    new = swap_model(lm, variant, **EXACT.get(variant, {}))
    for t in (0, 5, 14):
        changed = ids.clone()
        changed[:, t + 1:] = (ids[:, t + 1:] + 1 + torch.arange(16 - t - 1)) % VOCAB  # every later token differs
        with torch.no_grad():
            before, after = new(ids), new(changed)
        assert torch.allclose(before[:, :t + 1], after[:, :t + 1], atol=1e-5, rtol=0), t
        assert not torch.allclose(before[:, t + 1:], after[:, t + 1:], atol=1e-3)  # the later ones do change


def test_softmax_and_full_rank_lowrank_qkv_reproduce_the_dense_model(lm, ids):
    with torch.no_grad():
        dense = lm(ids)
        assert torch.allclose(swap_model(lm, "softmax")(ids), dense, atol=1e-5, rtol=0)
        assert torch.allclose(swap_model(lm, "lowrank-qkv", rank=WIDTH)(ids), dense, atol=1e-4, rtol=0)
        whitened = swap_model(lm, "lowrank-qkv", rank=WIDTH, method="aa_svd", calibration=ids)
        assert torch.allclose(whitened(ids), dense, atol=1e-3, rtol=0)
        low = swap_model(lm, "lowrank-qkv", rank=4)
        assert not torch.allclose(low(ids), dense, atol=1e-2)
    attn = low.get_submodule("model.layers.0.self_attn")
    assert sum(p.numel() for p in attn.parameters()) < sum(p.numel() for p in lm.get_submodule("model.layers.0.self_attn").parameters())


def test_aa_svd_fits_the_calibration_better_than_plain_svd(lm, ids):
    with torch.no_grad():
        dense = lm(ids)
        plain = (swap_model(lm, "lowrank-qkv", rank=6)(ids) - dense).square().mean()
        whitened = (swap_model(lm, "lowrank-qkv", rank=6, method="aa_svd", calibration=ids)(ids) - dense).square().mean()
    assert whitened < plain
    with pytest.raises(RankscopeError, match=r"lowrank-qkv: calibration must be what the layer receives"):
        swap_model(lm, "lowrank-qkv", rank=6, method="aa_svd")
    with pytest.raises(RankscopeError, match=r"lowrank-qkv: calibration must be a LlamaCalibration .*, got 'Tensor'"):
        swap_attention(lm.get_submodule("model.layers.0.self_attn"), "lowrank-qkv", rank=6, method="aa_svd",
                       calibration=torch.randn(2, 16, WIDTH))


def quadratic_reference(q_f: torch.Tensor, k_f: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``phi(q) phi(k)^T`` masked causally (the last T of L positions), normalised per row, times v."""
    groups = q_f.shape[1] // k_f.shape[1]
    k_f, v = k_f.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1)
    scores = (q_f @ k_f.transpose(-1, -2)) * causal_mask(q_f.shape[-2], k_f.shape[-2])  # (B, h, T, L)
    return (scores @ v) / scores.sum(-1, keepdim=True)


@pytest.mark.parametrize("queries, keys", [(7, 7), (3, 7), (1, 7)])
def test_prefix_sums_equal_the_masked_quadratic_form(queries, keys):
    gen = torch.Generator().manual_seed(0)
    q_f = torch.rand(2, 6, queries, 5, generator=gen, dtype=torch.float64) + 0.01
    k_f = torch.rand(2, 3, keys, 5, generator=gen, dtype=torch.float64) + 0.01
    v = torch.randn(2, 3, keys, 4, generator=gen, dtype=torch.float64)
    assert torch.allclose(causal_linear_attention(q_f, k_f, v), quadratic_reference(q_f, k_f, v), atol=1e-12, rtol=1e-10)


def test_performer_module_is_the_quadratic_form_of_its_features_and_finite():
    torch.manual_seed(0)
    attn = CausalPerformerAttention(WIDTH, HEADS, KV_HEADS, 8, features=16).eval()
    gen = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, h, 10, 8, generator=gen) * 3 for h in (HEADS, KV_HEADS, KV_HEADS))
    out = attn.mix(q, k, v, None)
    assert torch.isfinite(out).all()
    assert torch.allclose(out, quadratic_reference(*attn.features(q, k), v), atol=1e-5, rtol=1e-5)


def test_performer_key_shift_ignores_later_keys():
    """The timm variant's shift (the largest exponent over ALL keys) moves the EPS floor of earlier features when a
    later key is large; the causal shift reads position 0 only, so earlier outputs stay as they were."""
    torch.manual_seed(0)
    attn = CausalPerformerAttention(WIDTH, HEADS, KV_HEADS, 8, features=16).eval()
    gen = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, h, 10, 8, generator=gen) for h in (HEADS, KV_HEADS, KV_HEADS))
    big = k.clone()
    big[:, :, 6:] *= 8  # later keys much longer: their exponents dwarf the earlier ones'
    assert torch.equal(causal_key_shift(k, attn.projection), causal_key_shift(big, attn.projection))
    assert torch.allclose(attn.mix(q, k, v, None)[:, :, :6], attn.mix(q, big, v, None)[:, :, :6], atol=1e-6, rtol=0)
    root = attn.scaling ** 0.5

    def global_shift(keys: torch.Tensor) -> torch.Tensor:
        q_f = positive_features(q * root, attn.projection, is_query=True)
        return causal_linear_attention(q_f, positive_features(keys * root, attn.projection, is_query=False), v)[:, :, :6]

    assert (global_shift(k) - global_shift(big)).abs().max() > 1e-4  # what the causal shift avoids


@pytest.mark.parametrize("variant", CAUSAL)
def test_generation_with_the_kv_cache_gives_the_tokens_of_generation_without(lm, ids, variant):
    new = swap_model(lm, variant, **EXACT.get(variant, {}))
    prompt = ids[:1, :6]
    with torch.no_grad():
        cached = new.causal_lm.generate(prompt, do_sample=False, max_new_tokens=5, use_cache=True)
        uncached = new.causal_lm.generate(prompt, do_sample=False, max_new_tokens=5, use_cache=False)
    assert cached.shape == (1, 11)
    assert torch.equal(cached, uncached)
    if variant != "performer":  # exact attention: the dense model's own tokens
        with torch.no_grad():
            assert torch.equal(cached, lm.causal_lm.generate(prompt, do_sample=False, max_new_tokens=5, use_cache=True))


def test_a_padding_mask_is_applied_by_softmax_and_refused_by_performer(lm, ids):
    mask = torch.ones_like(ids)
    mask[1, :4] = 0  # the second sequence is left-padded
    with torch.no_grad():
        dense = lm.causal_lm(input_ids=ids, attention_mask=mask, use_cache=False).logits
        swapped = swap_model(lm, "softmax").causal_lm(input_ids=ids, attention_mask=mask, use_cache=False).logits
        assert torch.allclose(swapped[:, 4:], dense[:, 4:], atol=1e-5, rtol=0)
        with pytest.raises(RankscopeError, match=r"performer attention applies the causal mask only, not padding"):
            swap_model(lm, "performer").causal_lm(input_ids=ids, attention_mask=mask, use_cache=False)


@pytest.mark.parametrize("variant", sorted(NOT_CAUSAL))
def test_variants_without_a_causal_form_are_refused_saying_why(lm, variant):
    pattern = rf"^{variant} cannot replace a causal language model's attention: .+; causal variants: softmax, lowrank-qkv, performer$"
    with pytest.raises(RankscopeError, match=pattern) as err:
        swap_model(lm, variant)
    assert "\n" not in str(err.value)
    with pytest.raises(RankscopeError, match=pattern):
        swap_attention(lm.get_submodule("model.layers.0.self_attn"), variant)
    with pytest.raises(RankscopeError, match=r"unknown attention variant 'preformer'.*did you mean: .*performer"):
        swap_model(lm, "preformer")


def test_swapping_chosen_layers_leaves_the_original_untouched(lm, ids):
    before = {k: v.clone() for k, v in lm.state_dict().items()}
    with torch.no_grad():
        logits = lm(ids)
    new = swap_model(lm, "performer", layers=[-1])
    assert [type(new.get_submodule(p)).__name__ for p in attention_paths(new)] == ["LlamaAttention", "CausalPerformerAttention"]
    assert type(new.causal_lm.model.layers[1].self_attn).__name__ == "CausalPerformerAttention"  # the forward's own model
    assert swap_model(lm, "softmax", layers=["model.layers.0.self_attn"]).get_submodule("model.layers.1.self_attn") is not None
    after = lm.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert all(type(lm.get_submodule(p)).__name__ == "LlamaAttention" for p in attention_paths(lm))
    with torch.no_grad():
        assert torch.equal(lm(ids), logits)
    again = swap_model(new, "softmax")  # only the layer not yet swapped
    assert type(again.get_submodule("model.layers.0.self_attn")).__name__ == "CausalSoftmaxAttention"


def test_bad_layer_choices_are_refused(lm):
    with pytest.raises(RankscopeError, match=r"attention layer 2 is out of range: CausalLM has 2 \(0 to 1"):
        swap_model(lm, "softmax", layers=[2])
    with pytest.raises(RankscopeError, match=r"'model.layers.0.self_atn' is not an attention layer.*did you mean"):
        swap_model(lm, "softmax", layers=["model.layers.0.self_atn"])
    with pytest.raises(RankscopeError, match=r"chosen twice"):
        swap_model(lm, "softmax", layers=[1, -1])
    with pytest.raises(RankscopeError, match=r"only a transformers LlamaAttention can be swapped.*a performer causal variant"):
        swap_model(swap_model(lm, "performer", layers=[0]), "softmax", layers=[0])
    with pytest.raises(RankscopeError, match=r"performer takes no option rank; options: features, seed"):
        swap_model(lm, "performer", rank=4)


@pytest.mark.slow
def test_a_swapped_layer_of_smollm2_reads_no_later_token(smollm2):
    model, _ = smollm2
    new = swap_model(model, "performer", layers=[-1])
    ids = torch.randint(0, 1000, (1, 24), generator=torch.Generator().manual_seed(0))
    changed = ids.clone()
    changed[:, 12:] = (ids[:, 12:] + 7) % 1000
    with torch.no_grad():
        before, after = new(ids), new(changed)
    assert torch.isfinite(before).all()
    assert torch.allclose(before[:, :12], after[:, :12], atol=1e-4, rtol=0)
