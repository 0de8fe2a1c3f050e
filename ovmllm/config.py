"""Config loading at the face: typed dataclasses + YAML + dotted `key.sub=value` overrides.

Every component owns a dataclass next to its code; commands build theirs here, once, from
(defaults) <- YAML file <- command-line flags <- positional overrides, and validate it by
instantiating the dataclass (whose `__post_init__` checks values). Unknown keys and wrong
types are errors that name the key.

A field documents itself with a docstring right below it (torchtitan's convention), which
`field_docs` reads for `ovmllm config`:

    max_length: int = 4096
    \"\"\"Tokens per sample; longer samples are cut.\"\"\"

Partial settings on top of saved ones (a stage changing one media setting of a checkpoint)
are `overrides_of(Schema)`: the same fields, all optional, applied with `apply_overrides`.
"""

from __future__ import annotations

import ast
import functools
import inspect
import itertools
import textwrap
import typing
from dataclasses import asdict, dataclass, field, fields, is_dataclass, make_dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from encoder.files import write_text_atomic

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
            merged = OmegaConf.merge(merged, read_yaml(path))
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"override {item!r} is not of the form key=value")
        merged = OmegaConf.merge(merged, OmegaConf.from_dotlist(list(overrides)))
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{path or schema.__name__}: {exc}") from exc


def read_yaml(path: str | Path) -> Any:
    """A YAML file as an OmegaConf node."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        return OmegaConf.load(path)
    except (OmegaConfBaseException, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def peek(key: str, path: str | Path, overrides: list[str] = ()) -> Any:
    """A top-level key as the YAML file and overrides give it, before any schema: for a key
    that chooses the base of the full merge (a stage's `model_file`)."""
    given = [item for item in overrides if item.startswith(f"{key}=")]
    if given:
        return given[-1].split("=", 1)[1]
    return read_yaml(path).get(key)


def write_config(cfg: Any, path: str | Path) -> Path:
    """Write the resolved config as YAML, whole or not at all."""
    data = asdict(cfg) if is_dataclass(cfg) else dict(cfg)
    return write_text_atomic(path, yaml.safe_dump(data, sort_keys=False))


# -- partial settings -----------------------------------------------------------------------


def overrides_of(schema: type, module: str, parent: str = "") -> type:
    """A dataclass with the fields of `schema`, each optional with default None ("keep the
    base value"); nested configs become nested overrides, reachable as class attributes (e.g.
    `MediaOverrides.CodecOverrides`). `module` is the defining module's `__name__`, so
    instances pickle like those of a class written by hand.

    Knowingly approximate: None means "unset", so an override cannot set a field that is
    itself optional back to None (e.g. `codec.budget`); set the field that wins instead.
    """
    name = f"{schema.__name__.removesuffix('Config')}Overrides"
    qualname = f"{parent}.{name}" if parent else name
    hints = typing.get_type_hints(schema)
    specs, nested = [], []
    for item in fields(schema):
        kind = hints[item.name]
        if is_dataclass(kind):
            nested.append(overrides_of(kind, module, qualname))
            specs.append((item.name, nested[-1], field(default_factory=nested[-1])))
        else:
            specs.append((item.name, kind | None, field(default=None)))
    cls = make_dataclass(name, specs)
    cls.__module__, cls.__qualname__ = module, qualname
    cls.__doc__ = f"Optional {schema.__name__} fields: set ones replace the base value."
    cls.__overrides_of__ = schema  # where `field_docs` finds the documentation
    for child in nested:
        setattr(cls, child.__name__, child)
    return cls


def apply_overrides(base: T, overrides: Any) -> T:
    """`base` with every set field of `overrides` replacing its value (nested configs field by
    field); the result is validated again by the schema's `__post_init__`."""
    changes = {}
    for item in fields(overrides):
        value = getattr(overrides, item.name)
        if is_dataclass(value):
            changes[item.name] = apply_overrides(getattr(base, item.name), value)
        elif value is not None:
            changes[item.name] = value
    return replace(base, **changes)


# -- field documentation --------------------------------------------------------------------


@functools.cache
def field_docs(schema: type) -> dict[str, str]:
    """Field name → its docstring (the string literal right below the field), read once from
    the class source; fields without one are left out."""
    schema = getattr(schema, "__overrides_of__", schema)
    try:
        source = textwrap.dedent(inspect.getsource(schema))
    except (OSError, TypeError):  # no source (e.g. a generated class)
        return {}
    body = ast.parse(source).body[0].body
    docs = {}
    for node, after in itertools.pairwise(body):
        documented = (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        )
        if documented:
            docs[node.target.id] = inspect.cleandoc(after.value.value)
    return docs


@dataclass
class FieldInfo:
    key: str
    """Dotted key, as an override names it."""
    value: Any
    """The value (None for a section)."""
    doc: str
    """The field's docstring ("" when it has none)."""
    section: bool = False
    """A nested config, whose fields follow."""


def describe(cfg: Any, prefix: str = "") -> list[FieldInfo]:
    """Every field of a config instance in declaration order, nested configs walked (a section
    row, then its fields), with its value and docstring."""
    docs = field_docs(type(cfg))
    rows = []
    for item in fields(cfg):
        value = getattr(cfg, item.name)
        key = f"{prefix}{item.name}"
        if is_dataclass(value):
            rows.append(FieldInfo(key, None, docs.get(item.name, ""), section=True))
            rows += describe(value, f"{key}.")
        else:
            rows.append(FieldInfo(key, _plain(value), docs.get(item.name, "")))
    return rows


def _plain(value: Any) -> Any:
    """Configs inside lists and dicts as dicts, tuples as lists (what YAML writes)."""
    if is_dataclass(value):
        return asdict(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
