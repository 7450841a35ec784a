"""Toy models for the export tests: a seeded resnet-like net with BatchNorms, random BatchNorm statistics."""
from __future__ import annotations

import torch
from torch import nn

from core.models.cfg import ModelCfg

TOY_INPUT = (3, 8, 8)


class Block(nn.Module):
    """conv-bn-relu-conv-bn plus a (conv-bn) downsampling shortcut, as in torchvision's BasicBlock."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout)
        self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.downsample(x))


class ToyResNet(nn.Module):
    """A stem, one block and a Linear → BatchNorm1d → Linear head on 3x8x8 inputs; 10 outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.block = Block(8, 16)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Linear(12, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.block(self.stem(x))))


def randomize_batchnorms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm random running statistics and affine parameters, in place; returns ``model``."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in model.modules():
            if isinstance(bn, nn.modules.batchnorm._BatchNorm):
                n = bn.num_features
                bn.running_mean.copy_(torch.randn(n, generator=gen) * 0.5)
                bn.running_var.copy_(torch.rand(n, generator=gen) * 2 + 0.1)
                bn.weight.copy_(torch.randn(n, generator=gen))
                bn.bias.copy_(torch.randn(n, generator=gen) * 0.3)
    return model


def toy_resnet(seed: int = 0) -> ToyResNet:
    """A seeded :class:`ToyResNet` with random BatchNorm statistics, eval mode."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return randomize_batchnorms(ToyResNet(), seed).eval()


def toy_cfg() -> ModelCfg:
    return ModelCfg("toy-resnet", TOY_INPUT, 10)


def toy_input(batch: int = 4, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, *TOY_INPUT, generator=torch.Generator().manual_seed(seed))


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| over max |b|."""
    return float((a - b).abs().max() / b.abs().max())
