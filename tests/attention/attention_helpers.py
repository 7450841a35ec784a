"""Sizes shared by the attention tests (a module of its own: every test folder has a conftest.py)."""

DIM, HEADS, TOKENS = 64, 4, 50  # fmnist-vit: width 64, 4 heads, 49 patches + the class token
