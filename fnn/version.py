"""The version of fnn: one definition, read by pyproject.toml and the package."""

__version__ = "0.2.0"
