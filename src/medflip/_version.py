"""The package version: one definition, read by pyproject.toml, the CLI and saved model folders."""

__version__ = "0.1.0"
