"""A YAML mapping with the path that led to it: every profile error names the
file, the key path and the fault."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from mcmig.profiles.model import HostPort
from mcmig.transport.base import split_hostport

T = TypeVar("T")


class ProfileError(Exception):
    """A profile that cannot be used; the message says where and why."""


class ProfileNode:
    """A YAML mapping with the path that led to it, for error messages."""

    def __init__(self, data: Any, path: str, file: Path) -> None:
        self.file = file
        self.path = path
        if not isinstance(data, dict):
            self.fail(f"expected a mapping, found {type(data).__name__}")
        for key in data:
            if not isinstance(key, str):  # YAML allows numbers, lists, null as keys
                self.fail(f"key {key!r} is not a name")
        self.data: dict[str, Any] = data

    def fail(self, message: str, key: str | None = None) -> NoReturn:
        where = ".".join(p for p in (self.path, key) if p)
        raise ProfileError(f"{self.file}: {where or '(top)'}: {message}")

    def only(self, *keys: str) -> None:
        unknown = sorted(set(self.data) - set(keys))
        if unknown:
            self.fail(f"unknown key {unknown[0]!r} (known: {', '.join(keys)})")

    def get(self, key: str, kind: type[T], default: T | None = None) -> T:
        if key not in self.data:
            if default is None:
                self.fail("missing", key)
            return default
        value = self.data[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            self.fail(f"expected {kind.__name__}, found {type(value).__name__}", key)
        return value

    def child(self, key: str) -> ProfileNode:
        return ProfileNode(self.get(key, dict), f"{self.path}.{key}".lstrip("."), self.file)

    def items(self, key: str, default: list[Any] | None = None) -> list[ProfileNode]:
        values = self.get(key, list, default)
        return [
            ProfileNode(v, f"{self.path}.{key}[{i}]".lstrip("."), self.file)
            for i, v in enumerate(values)
        ]

    def strings(
        self, key: str, check: Callable[[str], bool] | None = None, what: str = ""
    ) -> list[str]:
        values = self.get(key, list, [])
        for i, v in enumerate(values):
            if not isinstance(v, str) or (check is not None and not check(v)):
                self.fail(f"{v!r} is not {what or 'a string'}", f"{key}[{i}]")
        return list(values)

    def hostport(self, key: str) -> HostPort:
        text = self.get(key, str)
        try:
            host, port = split_hostport(text)
        except ValueError as exc:
            self.fail(str(exc), key)
        return HostPort(host, port)
