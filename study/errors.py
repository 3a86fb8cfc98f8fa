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


def unknown_name(kind: str, name: str, known: list[str] | tuple[str, ...]) -> StudyError:
    """The error for a registry miss, listing what exists (as timm and Keras do)."""
    return StudyError(f"unknown {kind} {name!r}; known {kind}s: {', '.join(sorted(known))}")
