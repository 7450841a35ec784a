"""Reading ncnn model files (``.param`` text + ``.bin`` weights) into torch tensors.

ncnn (Tencent's mobile inference library) stores a network as a text ``.param`` file, the layer list, and a
``.bin`` file, every layer's weights one after another with no index. No well-kept Python library reads the
format into tensors (ncnn's own Python binding loads a net to run it; the converters, onnx2ncnn and pnnx, write
the format, they do not read it), so this module reads the two files here, for the layer types rankscope's
converted models use. The format is ncnn's own: ``src/paramdict.cpp`` (the ``k=v`` params) and
``src/modelbin.cpp`` (the weight blobs).

``.param``: a magic line ``7767517``, a line ``<layer count> <blob count>``, then one line per layer::

    Convolution  Conv_0  1 1 input 26  0=128 1=3 4=1 5=1 6=20736 9=1

type, name, number of inputs and outputs, their blob names, then ``key=value`` params (a float when the value
holds ``.`` or ``e``); a key at or below -23300 is an array ``-23300 - id = count,v1,v2,...``.

``.bin``: for each layer with weights, in layer order, its weight blob then (when ``5=1``) its bias. A weight blob
starts with a 4-byte tag: ``0x01306B47`` float16 values (padded to a multiple of 4 bytes), ``0x00000000`` or
``0x0002C056`` float32 values; int8 and table-quantised blobs are refused. A bias is float32 values with no tag.
Convolution weights are stored (out, in, kh, kw); so are Deconvolution weights, whose torch layout
(``ConvTranspose2d``) is (in, out, kh, kw).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.errors import RankscopeError

MAGIC = 7767517
ARRAY_KEY = -23300  # a key k <= ARRAY_KEY is the array param of id ARRAY_KEY - k
TAG_FP16 = 0x01306B47
TAG_FP32 = (0x00000000, 0x0002C056)  # raw float32; 0x0002C056 is ncnn's "raw data with extra scaling" tag
TAG_INT8 = 0x000D4B38
WEIGHTED = ("Convolution", "Deconvolution")  # layer types whose weights this reader knows how to read
WEIGHTLESS = ("Input", "PixelShuffle", "ReLU", "Split", "Eltwise", "Concat", "Crop", "Padding", "Interp", "BinaryOp",
              "Sigmoid")  # layer types that hold no weights in the .bin

# ncnn param ids of Convolution / Deconvolution (src/layer/convolution.cpp)
NUM_OUTPUT, KERNEL_W, DILATION_W, STRIDE_W, PAD_LEFT, BIAS_TERM, WEIGHT_SIZE = 0, 1, 2, 3, 4, 5, 6
INT8_SCALE_TERM, ACTIVATION, ACTIVATION_PARAMS, KERNEL_H, DILATION_H, STRIDE_H, PAD_TOP = 8, 9, 10, 11, 12, 13, 14
PAD_RIGHT, PAD_BOTTOM = 15, 16
ACTIVATIONS = {0: "none", 1: "relu", 2: "leakyrelu", 3: "clip", 4: "sigmoid", 5: "mish", 6: "hardswish"}

Param = int | float | tuple[int | float, ...]


@dataclass(frozen=True)
class NcnnLayer:
    """One line of a ``.param`` file.

    Attributes
    ----------
    type : ncnn layer type, e.g. ``"Convolution"``.
    name : the layer's name.
    bottoms, tops : names of its input and output blobs.
    params : param id -> value (int, float, or a tuple for an array param).
    """

    type: str
    name: str
    bottoms: tuple[str, ...]
    tops: tuple[str, ...]
    params: dict[int, Param] = field(hash=False)

    def get(self, key: int, default: Param = 0) -> Param:
        """The param ``key``, else ``default`` (ncnn's defaults are per layer type; the caller gives them)."""
        return self.params.get(key, default)

    def kernel(self) -> tuple[int, int]:
        """(kh, kw) of a convolution: ``11=`` defaults to ``1=``."""
        kw = int(self.get(KERNEL_W))
        return int(self.get(KERNEL_H, kw)), kw

    def activation(self) -> tuple[str, tuple[float, ...]]:
        """The fused activation of a convolution (``9=``) and its params (``-23310=``), e.g. ``("leakyrelu", (0.1,))``."""
        kind = int(self.get(ACTIVATION))
        if kind not in ACTIVATIONS:
            raise RankscopeError(f"ncnn layer {self.name}: unknown activation type {kind}")
        args = self.get(ACTIVATION_PARAMS, ())
        return ACTIVATIONS[kind], tuple(float(a) for a in (args if isinstance(args, tuple) else (args,)))


@dataclass(frozen=True)
class NcnnNet:
    """A whole ncnn model: its layers in file order and the weights of those that have them.

    Attributes
    ----------
    layers : every layer of the ``.param`` file.
    weights : layer name -> ``{"weight": tensor (out, in, kh, kw) as ncnn stores it, "bias": tensor (out,)}``, float32.
    """

    layers: tuple[NcnnLayer, ...]
    weights: dict[str, dict[str, torch.Tensor]] = field(hash=False)

    def of_type(self, kind: str) -> list[NcnnLayer]:
        """The layers of type ``kind``, in file order."""
        return [layer for layer in self.layers if layer.type == kind]


def _number(text: str, where: str) -> int | float:
    try:
        return float(text) if any(c in text for c in ".eE") else int(text)
    except ValueError:
        raise RankscopeError(f"{where}: {text!r} is not a number") from None


def _params(tokens: list[str], where: str) -> dict[int, Param]:
    params: dict[int, Param] = {}
    for token in tokens:
        key_text, sep, value = token.partition("=")
        if not sep:
            raise RankscopeError(f"{where}: param {token!r} is not key=value")
        key = _number(key_text, where)
        if not isinstance(key, int):
            raise RankscopeError(f"{where}: param key {key_text!r} is not an integer")
        if key <= ARRAY_KEY:
            count, *values = [_number(v, where) for v in value.split(",")]
            if count != len(values):
                raise RankscopeError(f"{where}: array param {token!r} says {count} values but has {len(values)}")
            params[ARRAY_KEY - key] = tuple(values)
        else:
            params[key] = _number(value, where)
    return params


def read_param(path: Path) -> tuple[NcnnLayer, ...]:
    """The layers of the text ``.param`` file at ``path``.

    Raises
    ------
    RankscopeError
        A missing file, a wrong magic number, a layer count that does not match the lines, or a malformed line;
        the message names the file (and the line).
    """
    try:
        lines = [line.split() for line in Path(path).read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as err:
        raise RankscopeError(f"{path}: cannot read the ncnn .param file ({err})") from None
    if not lines or lines[0] != [str(MAGIC)]:
        raise RankscopeError(f"{path} is not a text ncnn .param file (its first line is not the magic {MAGIC})")
    if len(lines) < 2 or len(lines[1]) != 2 or not all(t.isdigit() for t in lines[1]):
        raise RankscopeError(f"{path}: line 2 must be '<layer count> <blob count>'")
    count = int(lines[1][0])
    if len(lines) - 2 != count:
        raise RankscopeError(f"{path} declares {count} layers but has {len(lines) - 2} layer lines (truncated or corrupt)")
    layers = []
    for number, tokens in enumerate(lines[2:], start=3):
        where = f"{path} line {number}"
        if len(tokens) < 4 or not tokens[2].isdigit() or not tokens[3].isdigit():
            raise RankscopeError(f"{where}: expected '<type> <name> <inputs> <outputs> <blobs...> <k=v...>'")
        n_in, n_out = int(tokens[2]), int(tokens[3])
        blobs = tokens[4:4 + n_in + n_out]
        if len(blobs) < n_in + n_out or any("=" in b for b in blobs):
            raise RankscopeError(f"{where}: layer {tokens[1]} names fewer than its {n_in} input and {n_out} output blobs")
        layers.append(NcnnLayer(tokens[0], tokens[1], tuple(blobs[:n_in]), tuple(blobs[n_in:]),
                                _params(tokens[4 + n_in + n_out:], where)))
    return tuple(layers)


class _Reader:
    """Sequential reads from the bytes of a ``.bin`` file; running past the end names the file and the layer."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.data = Path(path).read_bytes()
        except OSError as err:
            raise RankscopeError(f"{path}: cannot read the ncnn .bin file ({err})") from None
        self.offset = 0

    def take(self, size: int, what: str) -> bytes:
        if self.offset + size > len(self.data):
            raise RankscopeError(f"{self.path} is truncated: {what} needs {size} bytes at offset {self.offset}, "
                                 f"but the file has {len(self.data)} bytes")
        out = self.data[self.offset:self.offset + size]
        self.offset += size
        return out

    def floats(self, count: int, what: str) -> np.ndarray:
        return np.frombuffer(self.take(4 * count, what), dtype="<f4")

    def tagged(self, count: int, what: str) -> np.ndarray:
        """A weight blob: the 4-byte tag, then ``count`` values as the tag says."""
        (tag,) = struct.unpack("<I", self.take(4, f"the tag of {what}"))
        if tag == TAG_FP16:
            raw = self.take(2 * count + (2 * count) % 4, what)  # padded to a multiple of 4 bytes
            return np.frombuffer(raw[:2 * count], dtype="<f2").astype(np.float32)
        if tag in TAG_FP32:
            return self.floats(count, what)
        kind = "int8" if tag == TAG_INT8 else "table-quantised" if tag else "unknown"
        raise RankscopeError(f"{self.path}: {what} is stored as {kind} data (tag 0x{tag:08X}) at offset {self.offset - 4}; "
                             "only float16 and float32 blobs are read")


def _layer_weights(layer: NcnnLayer, reader: _Reader) -> dict[str, torch.Tensor]:
    """The weight (out, in, kh, kw) and bias (out,) of a Convolution or Deconvolution layer, read from ``reader``."""
    out, (kh, kw), size = int(layer.get(NUM_OUTPUT)), layer.kernel(), int(layer.get(WEIGHT_SIZE))
    if layer.get(INT8_SCALE_TERM):
        raise RankscopeError(f"{reader.path}: layer {layer.name} is int8-quantised (8={layer.get(INT8_SCALE_TERM)}); "
                             "only float weights are read")
    if out < 1 or kh < 1 or kw < 1 or size % (out * kh * kw):
        raise RankscopeError(f"ncnn layer {layer.name}: weight size {size} is not a multiple of "
                             f"{out} outputs x {kh}x{kw} kernel")
    weight = reader.tagged(size, f"the weight of layer {layer.name}").reshape(out, size // (out * kh * kw), kh, kw)
    blobs = {"weight": torch.from_numpy(weight.copy())}  # (out, in, kh, kw)
    if layer.get(BIAS_TERM):
        blobs["bias"] = torch.from_numpy(reader.floats(out, f"the bias of layer {layer.name}").copy())
    return blobs


def read_ncnn(param: Path, weights: Path) -> NcnnNet:
    """The layers of ``param`` and their weights from ``weights``, every byte of which must be read.

    Raises
    ------
    RankscopeError
        A malformed ``.param``, a ``.bin`` too short for the layers (truncated) or longer than they need (corrupt,
        or not this model's), quantised blobs, or a layer type of unknown weight layout; the message names the file.
    """
    layers = read_param(param)
    reader = _Reader(weights)
    blobs: dict[str, dict[str, torch.Tensor]] = {}
    for layer in layers:
        if layer.type in WEIGHTED:
            blobs[layer.name] = _layer_weights(layer, reader)
        elif layer.type not in WEIGHTLESS:
            raise RankscopeError(f"{param}: layer {layer.name} has type {layer.type}, whose weights rankscope's ncnn "
                                 f"reader does not know (it reads {', '.join(WEIGHTED)})")
    left = len(reader.data) - reader.offset
    if left:
        raise RankscopeError(f"{weights} has {left} bytes after the last layer's weights (of {len(reader.data)}): "
                             f"it is corrupt or does not belong to {Path(param).name}")
    return NcnnNet(layers, blobs)


def _padding(layer: NcnnLayer) -> tuple[int, int]:
    """(pad_h, pad_w) of a convolution whose padding is the same on both sides (torch's ``padding=``)."""
    left = int(layer.get(PAD_LEFT))
    right, top = int(layer.get(PAD_RIGHT, left)), int(layer.get(PAD_TOP, left))
    bottom = int(layer.get(PAD_BOTTOM, top))
    if left != right or top != bottom or min(left, top) < 0:
        raise RankscopeError(f"ncnn layer {layer.name}: padding left {left} right {right} top {top} bottom {bottom} "
                             "is not the symmetric padding a torch convolution has")
    return top, left


def _conv(layer: NcnnLayer, blobs: dict[str, torch.Tensor]) -> nn.Module:
    """The torch ``Conv2d`` / ``ConvTranspose2d`` of a Convolution / Deconvolution layer, holding its weights."""
    weight = blobs["weight"]  # (out, in, kh, kw), as ncnn stores both kinds
    out, cin, kh, kw = weight.shape
    dilation = int(layer.get(DILATION_H, layer.get(DILATION_W, 1))), int(layer.get(DILATION_W, 1))
    stride = int(layer.get(STRIDE_H, layer.get(STRIDE_W, 1))), int(layer.get(STRIDE_W, 1))
    kind = nn.Conv2d if layer.type == "Convolution" else nn.ConvTranspose2d
    conv = kind(cin, out, (kh, kw), stride=stride, padding=_padding(layer), dilation=dilation, bias="bias" in blobs)
    with torch.no_grad():
        # ConvTranspose2d keeps (in, out, kh, kw); ncnn's deconvolution kernel is used as stored, not flipped
        conv.weight.copy_(weight if kind is nn.Conv2d else weight.transpose(0, 1))
        if conv.bias is not None:
            conv.bias.copy_(blobs["bias"])
    return conv


def _activation(layer: NcnnLayer) -> list[nn.Module]:
    """The fused activation of a convolution layer as a torch module (none: an empty list)."""
    kind, args = layer.activation()
    if kind == "none":
        return []
    if kind == "relu":  # ncnn's fused ReLU ignores activation params; the slope is type 2's
        return [nn.ReLU()]
    if kind == "leakyrelu":
        return [nn.LeakyReLU(args[0] if args else 0.0)]
    if kind == "sigmoid":
        return [nn.Sigmoid()]
    raise RankscopeError(f"ncnn layer {layer.name}: activation {kind} is not converted")


def to_sequential(net: NcnnNet) -> nn.Sequential:
    """The torch ``nn.Sequential`` of an ncnn net that is one chain (each layer reads the blob the one before wrote).

    Convolution and Deconvolution become ``Conv2d`` / ``ConvTranspose2d`` followed by their fused activation,
    PixelShuffle ``nn.PixelShuffle``; the Input layer is left out.

    Raises
    ------
    RankscopeError
        A layer that branches or reads another blob, or a layer type that is not converted.
    """
    modules: list[nn.Module] = []
    blob = None
    for layer in net.layers:
        if layer.type == "Input":
            blob = layer.tops[0]
            continue
        if layer.bottoms != (blob,) or len(layer.tops) != 1:
            raise RankscopeError(f"ncnn layer {layer.name} reads {', '.join(layer.bottoms) or 'nothing'}, not only the "
                                 "previous layer's output: only single chains are converted")
        if layer.type in WEIGHTED:
            modules += [_conv(layer, net.weights[layer.name]), *_activation(layer)]
        elif layer.type == "PixelShuffle":
            if int(layer.get(1)):
                raise RankscopeError(f"ncnn layer {layer.name}: PixelShuffle mode {layer.get(1)} is not torch's")
            modules.append(nn.PixelShuffle(int(layer.get(0, 1))))
        else:
            raise RankscopeError(f"ncnn layer {layer.name} of type {layer.type} is not converted to torch")
        blob = layer.tops[0]
    return nn.Sequential(*modules)
