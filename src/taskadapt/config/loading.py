"""Building a :class:`Config`: dataclass defaults <- YAML file <- ``key=value`` overrides, validated once.

    cfg = load_config("configs/scenes.yaml", ["data.batch_size=8", "data.tasks=[semseg,depth]"])

OmegaConf structured configs do the merging and type conversion; their errors, and unknown keys at any
depth, become one :class:`~taskadapt.errors.ConfigError` line naming the key, the bad value and what
is allowed. :func:`build_config` ends with :func:`taskadapt.config.validation.validate`.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from pathlib import Path
from typing import Any, cast, get_args, get_origin, get_type_hints

import yaml
from omegaconf import OmegaConf
from omegaconf import errors as oc_errors

from taskadapt.config.schema import Config
from taskadapt.config.validation import validate
from taskadapt.errors import ConfigError


def _fields(cls: type) -> dict[str, Any]:
    """Field name -> resolved type annotation of a config dataclass."""
    hints = get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _check_keys(data: Any, cls: type, prefix: str = "") -> None:
    """Reject unknown keys anywhere in ``data`` (a nested dict) with a did-you-mean message."""
    if not isinstance(data, dict):
        where = prefix.rstrip(".") or "the configuration"
        raise ConfigError(f"config key '{where}' must be a mapping of keys, got {data!r}")
    fields = _fields(cls)
    for key, value in data.items():
        if key not in fields:
            section = prefix.rstrip(".") or "top level"
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else "."
            raise ConfigError(
                f"unknown config key '{prefix}{key}'{hint} Allowed keys in {section}: {', '.join(fields)}"
            )
        ftype = fields[key]
        if dataclasses.is_dataclass(ftype) and value is not None:
            _check_keys(value, ftype, f"{prefix}{key}.")


def _field_type(dotted: str) -> Any:
    """The annotation of a dotted key (``data.tasks`` -> ``list[str]``); unknown keys raise."""
    cls: Any = Config
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        if get_origin(cls) is dict:  # a key inside a mapping field (model.loss_weights.semseg): its value type
            if i != len(parts) - 1:
                raise ConfigError(f"config key '{dotted}' goes below an entry of the mapping "
                                  f"'{'.'.join(parts[:i])}'; set the entry itself, e.g. {'.'.join(parts[:i + 1])}=...")
            return get_args(cls)[1]
        if not dataclasses.is_dataclass(cls):
            raise ConfigError(f"config key '{dotted}': '{'.'.join(parts[:i])}' is a value, not a section; "
                              f"set it as {'.'.join(parts[:i])}=...")
        fields = _fields(cls)
        if part not in fields:
            _check_keys({part: None}, cls, "".join(p + "." for p in parts[:i]))
        cls = fields[part]
    return cls


def parse_overrides(overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["data.batch_size=8", "data.tasks=semseg,depth"]`` -> a nested dict.

    Values are parsed as YAML (``8`` -> int, ``null`` -> None, ``[a,b]`` -> list); for list-typed
    keys a plain comma-separated string is split, so ``data.tasks=semseg,depth`` works too.
    """
    nested: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(
                f"override '{item}' is not of the form key=value (for example data.batch_size=8)"
            )
        ftype = _field_type(key)
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        if get_origin(ftype) is list and isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        node = nested
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return nested


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML config file into a dict; missing/unreadable/invalid files raise ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file '{path}' does not exist; pass a YAML file such as configs/scenes.yaml")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"config file '{path}' cannot be read: {err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"config file '{path}' is not valid YAML{where}: {getattr(err, 'problem', err)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{path}' must contain a mapping of keys at the top, got {type(data).__name__}")
    return data


def _expected(ftype: Any) -> str:
    args = [a for a in get_args(ftype) if a is not type(None)]
    if get_origin(ftype) is list:
        return f"a list of {getattr(args[0], '__name__', args[0])}"
    if args:
        return " or ".join(getattr(a, "__name__", str(a)) for a in args) + " or null"
    return getattr(ftype, "__name__", str(ftype))


def build_config(*layers: dict[str, Any]) -> Config:
    """Merge dict layers (later wins) over the dataclass defaults, convert types, validate."""
    schema = OmegaConf.structured(Config)
    for layer in layers:
        _check_keys(layer, Config)
    try:
        merged = OmegaConf.merge(schema, *layers)
        cfg = OmegaConf.to_object(merged)
    except oc_errors.OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "?"
        value = getattr(err, "value", None)
        try:
            expected = _expected(_field_type(key)) if key != "?" else "a value of the declared type"
        except ConfigError:
            expected = "a value of the declared type"
        raise ConfigError(f"config key '{key}' has a bad value {value!r}: expected {expected}") from None
    validate(cast(Config, cfg))
    return cast(Config, cfg)


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Defaults <- YAML file ``path`` (optional) <- ``key=value`` overrides; validated."""
    layers = [read_yaml(path)] if path is not None else []
    layers.append(parse_overrides(list(overrides)))
    return build_config(*layers)


def to_yaml(cfg: Config) -> str:
    """The resolved configuration as YAML (what a run saves next to its outputs)."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def to_dict(cfg: Config) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
