"""User-facing errors.

Every problem a user can cause (a bad name, a missing file, an impossible size) is raised as a
``StudyError`` whose message is one line that names the problem and the fix. The CLIs print that line
and exit with status 2, so a traceback always means a bug in the tool, never bad input.
"""

from __future__ import annotations


class StudyError(Exception):
    """A problem with the user's input or environment, explained in one line."""


class WeightsUnavailableError(StudyError):
    """ImageNet weights for a backbone are neither cached nor downloadable."""


class DatasetUnavailableError(StudyError):
    """A dataset is neither on disk nor downloadable."""


def plural(noun: str) -> str:
    """English plural of a registry kind: strategy -> strategies, grid -> grids, status -> statuses."""
    if noun.endswith("y") and noun[-2:-1] not in ("a", "e", "i", "o", "u", ""):
        return noun[:-1] + "ies"
    if noun.endswith(("s", "x", "z", "ch", "sh")):
        return noun + "es"
    return noun + "s"


def unknown_name(kind: str, name: str, known: list[str] | tuple[str, ...]) -> StudyError:
    """The error for a registry miss, listing what exists (as timm and Keras do)."""
    return StudyError(f"unknown {kind} {name!r}; known {plural(kind)}: {', '.join(sorted(known))}")
