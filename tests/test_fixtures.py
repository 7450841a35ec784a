"""The root conftest's shared fixtures do what they say: one thread, the device from the environment, seeded tiny models."""
from __future__ import annotations

import os

import torch

from tests.helpers import DIM, TINY_PARAMS, TOKENS
from tests.helpers import tiny_net as build_tiny_net


def test_every_test_runs_on_one_thread():
    assert torch.get_num_threads() == 1


def test_the_device_is_the_environments(device):
    assert device == torch.device(os.environ.get("RANKSCOPE_TEST_DEVICE", "cpu"))


def test_tiny_net_is_seeded_and_matches_its_cfg(tiny_net, tiny_cfg):
    again = build_tiny_net()
    assert all(torch.equal(a, b) for a, b in zip(tiny_net.state_dict().values(), again.state_dict().values()))
    assert sum(p.numel() for p in tiny_net.parameters()) == TINY_PARAMS
    assert tiny_net(torch.zeros(2, *tiny_cfg.input_size)).shape == (2, tiny_cfg.num_classes)


def test_timm_attn_and_its_tokens(timm_attn, tokens):
    assert tokens.shape == (2, TOKENS, DIM)
    assert timm_attn(tokens).shape == tokens.shape
