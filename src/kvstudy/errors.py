"""Errors shared across layers: a bottom module, so that config validation and the preflight it runs
(kvstudy.preflight) raise one error type without importing each other."""

from __future__ import annotations


class ConfigError(ValueError):
    """A bad study config; the message is one line naming the offending key. Preflight (kvstudy.preflight) may find
    several problems: `lines` holds each, one line apiece, the message is the first (and how many more)."""

    def __init__(self, message: str, lines: list[str] | None = None):
        super().__init__(message)
        self.lines = lines or [message]
