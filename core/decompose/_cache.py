"""A small LRU of factorizations, keyed by the weight they were computed from.

A key holds the weight's ``id``, its in-place version counter and its storage pointer, so an
optimiser step or ``load_state_dict`` (both bump the version or move the storage) makes old entries
unreachable; a weak reference to the weight guards against a recycled ``id``.
"""
from __future__ import annotations

import weakref
from collections import OrderedDict
from typing import Any, Callable, Hashable

import torch


def tensor_key(t: torch.Tensor) -> tuple:
    """What identifies a tensor's current contents without reading them (an inference tensor, made under
    ``torch.inference_mode``, cannot change in place and has no version counter)."""
    version = -1 if t.is_inference() else t._version
    return (id(t), version, t.data_ptr(), tuple(t.shape), str(t.dtype), str(t.device))


class FactorizationCache:
    """Least-recently-used store of computed factors; ``maxsize`` entries."""

    def __init__(self, maxsize: int = 32) -> None:
        self.maxsize = maxsize
        self._entries: OrderedDict[Hashable, tuple[weakref.ref, Any]] = OrderedDict()
        self.misses = 0  # computations done, for tests and the dashboard's "cached" badge

    def get(self, weight: torch.Tensor, key: Hashable, compute: Callable[[], Any]) -> Any:
        """The value cached for ``(weight, key)``, computing and storing it on a miss."""
        full_key = (tensor_key(weight), key)
        hit = self._entries.get(full_key)
        if hit is not None and hit[0]() is weight:
            self._entries.move_to_end(full_key)
            return hit[1]
        self.misses += 1
        value = compute()
        self._entries[full_key] = (weakref.ref(weight), value)
        self._entries.move_to_end(full_key)
        while len(self._entries) > self.maxsize:
            self._entries.popitem(last=False)
        return value

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


CACHE = FactorizationCache(128)  # a ResNet-50 with three methods per 3x3 conv needs 85 entries
