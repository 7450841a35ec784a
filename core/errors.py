"""Errors that rankscope reports to a user as one line (exit code 2 in the CLI, a message in the dashboard)."""
from __future__ import annotations

import difflib


class RankscopeError(Exception):
    """A problem with the user's input: unknown name, bad file, impossible setting.

    The message is one sentence that says what is wrong and, where it can, how to fix it.
    Front ends catch this type and show ``str(err)``; anything else is a bug and keeps its traceback.
    """


def close_matches_hint(name: str, candidates: list[str]) -> str:
    """Return ``" (did you mean: a, b?)"`` for the candidates closest to ``name``, or ``""``."""
    close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.5)
    return f" (did you mean: {', '.join(close)}?)" if close else ""
