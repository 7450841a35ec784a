"""The test suite, a package tree: shared helpers import as ``tests.<folder>.helpers``, fixtures live in conftest.py."""
