"""The ncnn reader on small hand-made .param/.bin pairs: params, blob layouts, every byte read, bad files named."""
from __future__ import annotations

import struct

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from core.errors import RankscopeError
from core.models.ncnn import TAG_FP16, TAG_INT8, read_ncnn, read_param, to_sequential

PARAM = """7767517
5 5
Input            data   0 1 data 0=8 1=8 2=2
Convolution      conv1  1 1 data c1 0=3 1=3 4=1 5=1 6=54 9=2 -23310=1,0.250000
Convolution      conv2  1 1 c1 c2 0=4 1=1 5=0 6=12
Deconvolution    up     1 1 c2 d 0=2 1=4 3=2 4=1 5=1 6=128
PixelShuffle     ps     1 1 d out 0=1
"""


def _weights(seed: int = 0) -> dict[str, np.ndarray]:
    gen = np.random.default_rng(seed)
    return {
        "conv1.weight": gen.standard_normal((3, 2, 3, 3)).astype(np.float16),  # 54 values: 108 bytes, a multiple of 4
        "conv1.bias": gen.standard_normal(3).astype(np.float32),
        "conv2.weight": gen.standard_normal((4, 3, 1, 1)).astype(np.float32),  # fp32 blob, tag 0, no bias
        "up.weight": gen.standard_normal((2, 4, 4, 4)).astype(np.float16),  # ncnn stores deconvolutions (out, in, kh, kw)
        "up.bias": gen.standard_normal(2).astype(np.float32),
    }


def _bin(w: dict[str, np.ndarray]) -> bytes:
    tag = lambda t: struct.pack("<I", t)  # noqa: E731
    return (tag(TAG_FP16) + w["conv1.weight"].tobytes() + w["conv1.bias"].tobytes()
            + tag(0) + w["conv2.weight"].tobytes()
            + tag(TAG_FP16) + w["up.weight"].tobytes() + w["up.bias"].tobytes())


@pytest.fixture
def files(tmp_path):
    weights = _weights()
    (tmp_path / "net.param").write_text(PARAM)
    (tmp_path / "net.bin").write_bytes(_bin(weights))
    return tmp_path / "net.param", tmp_path / "net.bin", weights


def test_param_lines_become_layers_with_typed_params(files):
    layers = read_param(files[0])
    assert [(l.type, l.name) for l in layers] == [("Input", "data"), ("Convolution", "conv1"), ("Convolution", "conv2"),
                                                  ("Deconvolution", "up"), ("PixelShuffle", "ps")]
    conv1 = layers[1]
    assert (conv1.bottoms, conv1.tops) == (("data",), ("c1",))
    assert conv1.params == {0: 3, 1: 3, 4: 1, 5: 1, 6: 54, 9: 2, 10: (0.25,)}  # -23310 is the array of id 10
    assert conv1.kernel() == (3, 3) and conv1.activation() == ("leakyrelu", (0.25,))
    assert layers[2].activation() == ("none", ())


def test_blobs_are_read_in_layer_order_with_shapes_from_the_param_file(files):
    net = read_ncnn(files[0], files[1])
    w = files[2]
    assert set(net.weights) == {"conv1", "conv2", "up"}
    for name, blobs in net.weights.items():
        for kind, tensor in blobs.items():
            assert tensor.dtype == torch.float32
            assert torch.equal(tensor, torch.from_numpy(w[f"{name}.{kind}"].astype(np.float32)))
    assert "bias" not in net.weights["conv2"]


def test_odd_fp16_blobs_are_padded_to_four_bytes(tmp_path):
    (tmp_path / "n.param").write_text("7767517\n2 2\nInput in 0 1 in\nConvolution c 1 1 in out 0=1 1=1 5=1 6=3\n")
    weight, bias = np.array([1.5, -2.0, 0.25], np.float16), np.array([3.0], np.float32)
    body = struct.pack("<I", TAG_FP16) + weight.tobytes() + b"\0\0" + bias.tobytes()  # 6 bytes of fp16 + 2 of padding
    (tmp_path / "n.bin").write_bytes(body)
    net = read_ncnn(tmp_path / "n.param", tmp_path / "n.bin")
    assert net.weights["c"]["weight"].flatten().tolist() == [1.5, -2.0, 0.25] and net.weights["c"]["bias"].tolist() == [3.0]


def test_the_torch_chain_computes_what_the_layers_say(files):
    net = read_ncnn(files[0], files[1])
    model = to_sequential(net)
    assert [type(m) for m in model] == [nn.Conv2d, nn.LeakyReLU, nn.Conv2d, nn.ConvTranspose2d, nn.PixelShuffle]
    w = {k: torch.from_numpy(v.astype(np.float32)) for k, v in files[2].items()}
    x = torch.randn(1, 2, 8, 8, generator=torch.Generator().manual_seed(0))
    y = F.leaky_relu(F.conv2d(x, w["conv1.weight"], w["conv1.bias"], padding=1), 0.25)
    y = F.conv2d(y, w["conv2.weight"])
    y = F.conv_transpose2d(y, w["up.weight"].transpose(0, 1), w["up.bias"], stride=2, padding=1)  # (in, out, kh, kw)
    with torch.no_grad():
        assert torch.allclose(model(x), y, atol=1e-5)
    assert model(x).shape == (1, 2, 16, 16)


def test_a_truncated_bin_is_named_with_the_layer(files, tmp_path):
    param, weights, _ = files
    short = tmp_path / "short.bin"
    short.write_bytes(weights.read_bytes()[:-5])
    with pytest.raises(RankscopeError, match=rf"{short} is truncated: the bias of layer up needs 8 bytes"):
        read_ncnn(param, short)


def test_bytes_left_over_are_refused(files, tmp_path):
    param, weights, _ = files
    longer = tmp_path / "long.bin"
    longer.write_bytes(weights.read_bytes() + b"\0\0\0\0")
    with pytest.raises(RankscopeError, match=rf"{longer} has 4 bytes after the last layer's weights"):
        read_ncnn(param, longer)


def test_quantised_blobs_are_refused(files, tmp_path):
    param, weights, _ = files
    int8 = tmp_path / "int8.bin"
    int8.write_bytes(struct.pack("<I", TAG_INT8) + weights.read_bytes()[4:])
    with pytest.raises(RankscopeError, match=r"the weight of layer conv1 is stored as int8 data"):
        read_ncnn(param, int8)


@pytest.mark.parametrize(("text", "message"), [
    ("7767518\n0 0\n", "not a text ncnn .param file"),
    ("7767517\n3 3\nInput in 0 1 in\n", "declares 3 layers but has 1"),
    ("7767517\n1 1\nConvolution c 1 1 in\n", "names fewer than its 1 input and 1 output blobs"),
    ("7767517\n1 1\nInput in 0 1 in 0=abc\n", "'abc' is not a number"),
    ("7767517\n1 1\nInput in 0 1 in -23310=2,0.1\n", "says 2 values but has 1"),
    ("7767517\n2 2\nInput in 0 1 in\nInnerProduct fc 1 1 in out 0=2 1=1 2=4\n", "type InnerProduct, whose weights"),
])
def test_bad_param_files_say_what_is_wrong_and_name_the_file(tmp_path, text, message):
    (tmp_path / "bad.param").write_text(text)
    (tmp_path / "bad.bin").write_bytes(b"")
    with pytest.raises(RankscopeError, match=message) as err:
        read_ncnn(tmp_path / "bad.param", tmp_path / "bad.bin")
    assert "bad.param" in str(err.value)


def test_a_branching_net_is_not_made_a_chain(tmp_path):
    (tmp_path / "b.param").write_text("7767517\n3 3\nInput in 0 1 in\nSplit s 1 2 in a b\nPixelShuffle p 1 1 a out 0=2\n")
    (tmp_path / "b.bin").write_bytes(b"")
    with pytest.raises(RankscopeError, match="only single chains are converted"):
        to_sequential(read_ncnn(tmp_path / "b.param", tmp_path / "b.bin"))
