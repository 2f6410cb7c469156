"""Build a config from YAML files (with `_BASE_` inheritance) and `KEY VALUE` overrides.

Every value remembers where it came from, so that an unknown key, a wrong type or an
inconsistent combination is reported with the file or command-line override at fault.
"""
from __future__ import annotations

import ast
import os
from typing import Any, Dict, Iterable, List, Optional, Sequence

import yaml
from yacs.config import CfgNode as CN

from .defaults import get_cfg
from .errors import ConfigError
from .validate import validate

BASE_KEY = "_BASE_"


def _read_yaml(path: str, _seen: Optional[List[str]] = None) -> Dict[str, Any]:
    """Read `path` and the chain of `_BASE_` files it names; later files win."""
    path = os.path.abspath(path)
    seen = list(_seen or [])
    if path in seen:
        raise ConfigError(f"{path}: _BASE_ cycle through {' -> '.join(seen)}")
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    with open(path) as f:
        try:
            data = yaml.safe_load(f) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    base = data.pop(BASE_KEY, None)
    if base is None:
        return {"__source__": path, "data": data, "bases": []}
    bases = [base] if isinstance(base, str) else list(base)
    resolved = []
    for b in bases:
        bpath = b if os.path.isabs(b) else os.path.join(os.path.dirname(path), b)
        resolved.append(_read_yaml(bpath, seen + [path]))
    return {"__source__": path, "data": data, "bases": resolved}


def _flatten(data: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    out = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _file_items(tree: Dict[str, Any]) -> List[tuple]:
    """(key, value, source) of a YAML tree, bases first."""
    items = []
    for b in tree["bases"]:
        items.extend(_file_items(b))
    src = tree["__source__"]
    items.extend((k, v, src) for k, v in _flatten(tree["data"]).items())
    return items


def _decode(value: Any) -> Any:
    """Turn a string from the command line or YAML into a python literal when it is one."""
    if not isinstance(value, str):
        return value
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def _coerce(key: str, old: Any, new: Any, source: str) -> Any:
    """Return `new` with the type of the default `old`, or raise naming key and source."""
    new = _decode(new)
    if old is None or new is None:
        return new
    if isinstance(old, bool):
        if isinstance(new, bool):
            return new
    elif isinstance(old, float) and isinstance(new, (int, float)) and not isinstance(new, bool):
        return float(new)
    elif isinstance(old, int) and isinstance(new, int) and not isinstance(new, bool):
        return new
    elif isinstance(old, str) and isinstance(new, str):
        return new
    elif isinstance(old, (list, tuple)) and isinstance(new, (list, tuple)):
        return list(new)
    elif isinstance(old, str) and isinstance(new, (int, float)):
        return str(new)  # e.g. a numeric-looking path component
    raise ConfigError(
        f"{source}: {key} must be of type {type(old).__name__} (default {old!r}), got {new!r}"
    )


def _set(cfg: CN, key: str, value: Any, source: str, origins: Dict[str, str]) -> None:
    node = cfg
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        if not isinstance(node, CN) or part not in node:
            raise ConfigError(f"{source}: unknown config key {'.'.join(parts[: i + 1])} (in {key})")
        node = node[part]
    last = parts[-1]
    if not isinstance(node, CN) or last not in node:
        raise ConfigError(f"{source}: unknown config key {key}")
    if isinstance(node[last], CN):
        raise ConfigError(f"{source}: {key} is a section, not a value")
    node[last] = _coerce(key, node[last], value, source)
    origins[key] = source


def merge(cfg: CN, cfg_files: Iterable[str] = (), opts: Sequence[Any] = (),
          origins: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """Merge YAML files then `KEY VALUE` pairs into `cfg` in place; return key -> source."""
    origins = {} if origins is None else origins
    for path in cfg_files:
        for key, value, src in _file_items(_read_yaml(path)):
            _set(cfg, key, value, src, origins)
    opts = list(opts)
    if len(opts) % 2:
        raise ConfigError(f"command line: override {opts[-1]!r} has no value (need KEY VALUE pairs)")
    for key, value in zip(opts[0::2], opts[1::2]):
        _set(cfg, str(key), value, f"command-line override {key}", origins)
    return origins


def load_config(cfg_file: Optional[str] = None, opts: Sequence[Any] = (),
                freeze: bool = True) -> CN:
    """Defaults <- `cfg_file` (and its bases) <- `opts`, validated.

    Raises ConfigError naming the key and the file/override it came from.
    """
    cfg = get_cfg()
    origins = merge(cfg, [cfg_file] if cfg_file else [], opts)
    validate(cfg, origins)
    if freeze:
        cfg.freeze()
    return cfg
