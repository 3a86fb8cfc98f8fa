"""One registry type for every kind of component (datasets, backbones, strategies): timm's pattern.

A component is a frozen record; the registry maps its name to it. Every kind has the same four verbs, the same
overwrite guard and the same one-line error for an unknown name, so a plugin registers a strategy exactly as a
test registers a tiny backbone.
"""

from __future__ import annotations

import contextlib
import fnmatch
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from study.errors import StudyError, unknown_name

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> record, in registration order."""

    def __init__(self, kind: str, key: Callable[[T], str] = lambda record: record.name) -> None:  # type: ignore[attr-defined]
        self.kind = kind
        self._key = key
        self._records: dict[str, T] = {}

    def register(self, record: T, *, overwrite: bool = False) -> T:
        """Add ``record``; a name already taken is an error unless ``overwrite`` (a plugin replacing a built-in)."""
        name = self._key(record)
        if not name or not str(name).strip():
            raise StudyError(f"a {self.kind} needs a non-empty name")
        if name in self._records and not overwrite:
            raise StudyError(
                f"{self.kind} {name!r} is already registered; pick another name or pass overwrite=True to replace it"
            )
        self._records[name] = record
        return record

    def get(self, name: str) -> T:
        """The record called ``name``; an unknown name is a one-line error listing the known ones."""
        try:
            return self._records[name]
        except (KeyError, TypeError):
            raise unknown_name(self.kind, str(name), list(self._records)) from None

    def list(self, pattern: str | None = None) -> list[str]:
        """Registered names, sorted; ``pattern`` is a shell glob (``"pacs_*"``)."""
        names = sorted(self._records)
        return names if pattern is None else [n for n in names if fnmatch.fnmatchcase(n, pattern)]

    def unregister(self, name: str) -> T | None:
        """Remove ``name`` (a no-op when absent); returns the record removed."""
        return self._records.pop(name, None)

    @contextlib.contextmanager
    def temporary(self, record: T) -> Iterator[T]:
        """Register ``record`` for the duration of a ``with`` block (tests, a user's folder measured once)."""
        name = self._key(record)
        previous = self._records.get(name)
        self._records[name] = record
        try:
            yield record
        finally:
            if previous is None:
                self._records.pop(name, None)
            else:
                self._records[name] = previous

    def records(self) -> list[T]:
        """Every record, in registration order (the order tables and figures use unless a record says otherwise)."""
        return list(self._records.values())

    def __contains__(self, name: object) -> bool:
        return name in self._records

    def __iter__(self) -> Iterator[str]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)
