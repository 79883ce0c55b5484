"""Typed reading of TOML tables: every error names the file, the key path, the bad value and what
is allowed, in one line (a ConfigError, exit 2).

Records are built by the one codec (bench.codec), so a knob is checked exactly as a result file
is: unknown keys refused with a "did you mean", a bool is not an int, numbers finite, and the
record's own validate() run last.
"""
from __future__ import annotations

import typing
from typing import Any

from bench.codec import DecodeError, check_keys, did_you_mean, from_json
from bench.errors import ConfigError


class Reader:
    """Reads one suite file; carries its name so every message can start with it."""

    def __init__(self, file: str):
        self.file = file

    def fail(self, path: str, message: str) -> ConfigError:
        return ConfigError(f"{self.file}: {path}: {message}" if path else f"{self.file}: {message}")

    def _decoded(self, exc: DecodeError) -> ConfigError:
        return self.fail(exc.path, exc.message)

    def check_keys(self, table: dict, allowed: typing.Iterable[str], path: str) -> None:
        try:
            check_keys(table, allowed, path)
        except DecodeError as exc:
            raise self._decoded(exc) from None

    def expect(self, value: Any, kinds: tuple[type, ...], path: str, what: str) -> Any:
        # bool is an int in Python; a TOML `true` where a number belongs is a mistake.
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            raise self.fail(path, f"{value!r} is not allowed; expected {what}")
        return value

    def choice(self, value: Any, allowed: typing.Sequence[str], path: str) -> str:
        if value not in allowed:
            raise self.fail(path, f"{value!r} is not allowed{did_you_mean(str(value), allowed)} "
                                  f"(allowed: {', '.join(allowed)})")
        return value

    def record(self, cls: type, table: Any, path: str) -> Any:
        """A frozen record from a TOML table: each field type-checked, then the record validated."""
        self.expect(table, (dict,), path, "a table")
        try:
            return from_json(cls, table, path)
        except DecodeError as exc:
            raise self._decoded(exc) from None


def env_seconds(name: str, default: float) -> float:
    """A time limit a user may set in the environment: `default`, or the number of seconds in
    $name where that is set (anything but a number > 0 is bad input, naming the variable)."""
    import os

    raw = os.environ.get(name)
    try:
        value = float(raw) if raw else default
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigError(f"{name}={raw!r}: expected a number of seconds > 0")
    return value
