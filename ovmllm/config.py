"""Config loading at the face: typed dataclasses + YAML + dotted `key.sub=value` overrides.

Every component owns a dataclass next to its code; commands build theirs here, once, from
(defaults) <- YAML file <- command-line flags <- positional overrides, and validate it by
instantiating the dataclass (whose `__post_init__` checks values). Unknown keys and wrong
types are errors that name the key.
"""

from __future__ import annotations

import os
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override that does not fit its schema."""


def load_config(
    schema: type[T],
    path: str | Path | None = None,
    overrides: list[str] = (),
    base: dict | None = None,
) -> T:
    """Build `schema` from its defaults, then `base` (e.g. values saved with a checkpoint), an
    optional YAML file, and `key=value` overrides, in that order."""
    try:
        merged = OmegaConf.structured(schema)
        if base is not None:
            merged = OmegaConf.merge(merged, OmegaConf.create(base))
        if path is not None:
            path = Path(path)
            if not path.is_file():
                raise ConfigError(f"config file not found: {path}")
            merged = OmegaConf.merge(merged, OmegaConf.load(path))
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"override {item!r} is not of the form key=value")
        merged = OmegaConf.merge(merged, OmegaConf.from_dotlist(list(overrides)))
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{path or schema.__name__}: {exc}") from exc


def to_dict(cfg: Any) -> dict:
    return asdict(cfg) if is_dataclass(cfg) else dict(cfg)


def write_config(cfg: Any, path: str | Path) -> Path:
    """Write the resolved config as YAML (temp name, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    tmp.replace(path)
    return path
