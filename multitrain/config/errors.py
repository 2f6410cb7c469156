"""The error every config problem raises (loading, merging and validation alike)."""


class ConfigError(ValueError):
    """A config problem, with the key and the source (file or override) that caused it."""
