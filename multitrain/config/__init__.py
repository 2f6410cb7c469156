"""The configuration tree: `get_cfg()` for the defaults, `load_config()` for a run's config."""
from .defaults import get_cfg
from .errors import ConfigError
from .loader import load_config, merge

__all__ = ["get_cfg", "load_config", "merge", "ConfigError"]
