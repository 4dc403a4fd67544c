"""Errors that any layer may raise for the person at the keyboard."""

from __future__ import annotations


class UsageError(Exception):
    """A command-line or profile mistake: printed without a traceback, exit 2."""
