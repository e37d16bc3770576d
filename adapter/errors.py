"""Errors shared across layers, kept at the bottom of the import graph.

Why a module of its own: an error raised in one module and caught in another should not make
either import the other (structlog's exceptions.py, "factored out to avoid import loops").
This is where the one error tree of issue 11 grows; today it holds the settings error.
"""

from __future__ import annotations

__all__ = ["SettingsError"]


class SettingsError(ValueError):
    """A setting has a value the service cannot run with."""
