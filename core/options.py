"""The options of a method built on a function: the function's keyword parameters that have defaults."""
from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any


def keyword_defaults(fn: Callable[..., Any]) -> dict[str, Any]:
    """``{name: default}`` of the parameters of ``fn`` that have defaults, in signature order.

    Parameters
    ----------
    fn : the function (or ``__init__``) a decomposition method or attention variant is built on.

    Returns
    -------
    dict
        The options such a method accepts, with their default values.
    """
    return {n: p.default for n, p in inspect.signature(fn).parameters.items() if p.default is not inspect.Parameter.empty}
