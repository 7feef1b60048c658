"""Frozen config dataclasses <-> plain dicts, YAML and JSON.

YAML stays declarative (``yaml.safe_load``: no tags, no imports). ``from_dict`` rebuilds nested
dataclasses and tuples from their type hints and rejects unknown keys with the valid ones, so
a typo in a config file is one clear error instead of a silently ignored setting.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from egoedge.trainer.common.io import EgoedgeError, atomic_write, first_line

T = TypeVar("T")


def to_dict(obj: Any) -> Any:
    """A dataclass (or nested containers of them) as JSON/YAML-ready dicts and lists."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return None if value is None else _convert(args[0], value, where)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            raise EgoedgeError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise EgoedgeError(f"{where}: expected {len(args)} items, got {len(value)}")
        return tuple(_convert(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool) and not isinstance(value, tp):
        raise EgoedgeError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def from_dict(cls: type[T], data: dict, where: str = "config") -> T:
    """Build ``cls`` from a (possibly partial) dict; missing fields keep their defaults.

    Example::

        from_dict(TrainConfig, {"epochs": 3, "lr": 0.002})
    """
    if not isinstance(data, dict):
        raise EgoedgeError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise EgoedgeError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; valid: {', '.join(sorted(names))}")
    return cls(**{k: _convert(hints[k], v, f"{where}.{k}") for k, v in data.items()})


def merge(base: T, overrides: dict, where: str = "config") -> T:
    """``base`` with the (nested, partial) ``overrides`` applied."""
    merged = _deep_update(to_dict(base), overrides)
    return from_dict(type(base), merged, where)


def _deep_update(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _deep_update(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_config_file(path: str | Path) -> dict:
    """A YAML (``.yaml``/``.yml``) or JSON file as a dict; a bad file is one clear error."""
    path = Path(path)
    if not path.is_file():
        raise EgoedgeError(f"config file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise EgoedgeError(f"{path}: not a readable text file ({type(e).__name__}); give a YAML or JSON "
                           "config") from None
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            raise EgoedgeError(f"{path}: config files are .yaml, .yml or .json")
    except json.JSONDecodeError as e:
        raise EgoedgeError(f"{path}: not valid JSON: {e}") from None
    except Exception as e:
        if type(e).__module__.startswith("yaml"):  # yaml.YAMLError, without importing yaml for JSON files
            raise EgoedgeError(f"{path}: not valid YAML: {first_line(e)}") from None
        raise
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise EgoedgeError(f"{path}: the top level must be a mapping of sections")
    return data


def write_config_file(obj: Any, path: str | Path) -> Path:
    """Write a dataclass config as YAML or JSON (by suffix), atomically."""
    path = Path(path)
    data = to_dict(obj)
    if path.suffix in (".yaml", ".yml"):
        import yaml

        text = yaml.safe_dump(data, sort_keys=False)
    else:
        text = json.dumps(data, indent=2) + "\n"
    return atomic_write(path, lambda p: p.write_text(text))
