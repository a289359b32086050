"""Errors shared across layers: a bottom module, so that config validation and the preflight it runs
(kvstudy.preflight) raise one error type without importing each other."""

from __future__ import annotations

import re

# a key path below a config key, as this project's ValueErrors begin their message: `window_size: ...`,
# `params.kernel_size: ...`, `constraints[0]: ...`, `figures[2].name: ...`
_KEY = re.compile(r"[A-Za-z_][\w-]*(\[\d+\])*(\.[A-Za-z_][\w-]*(\[\d+\])*)*")


class ConfigError(ValueError):
    """A bad study config: `key` names the offending key (`presses[2].method`), `message` says why; the error reads
    as one line, `config error: KEY: MESSAGE`. Preflight (kvstudy.preflight) may find several problems: `lines`
    holds each, one line apiece (ConfigError.several)."""

    def __init__(self, key: str, message: str):
        self.key, self.message = key, message
        line = f"config error: {key}: {message}"
        super().__init__(line)
        self.lines = [line]

    @classmethod
    def several(cls, lines: list[str]) -> ConfigError:
        """One error of several problems, each already a `config error: KEY: ...` line: the first names the error,
        with how many more there are."""
        n = len(lines) - 1
        more = f" (and {n} more problem{'s' if n > 1 else ''}: kvstudy validate lists them)" if n else ""
        err = cls.__new__(cls)
        ValueError.__init__(err, lines[0] + more)
        err.key, err.message, err.lines = None, lines[0] + more, list(lines)
        return err

    @classmethod
    def below(cls, prefix: str, e: Exception) -> ConfigError:
        """A lower layer's error about a key below `prefix` (`tasks.cite`, `presses[2]`, `presses[2].search`): its
        own `key` where it has one (kvstudy.tasks.base.TaskParamError), else the key path its message begins with
        (`window_size: ...`, the convention of the presses', tasks' and searches' ValueErrors), else `prefix`."""
        if isinstance(e, ConfigError):
            return e
        text = str(e)
        key = getattr(e, "key", None)
        if key is None:
            head, sep, why = text.partition(": ")
            if sep and _KEY.fullmatch(head):
                key, text = head, why
        if key is None:
            return cls(prefix, text)
        return cls(f"{prefix}.{key}" if prefix else key, text)
