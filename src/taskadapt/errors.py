"""User-facing errors.

Every problem a user can fix (bad config, missing file, wrong dataset layout, corrupt checkpoint)
is raised as a :class:`TaskadaptError` subclass carrying one clear message that names the problem
and the fix. The CLI prints that message on one line and exits with code 2; it never shows a
traceback for these. Programming errors (bugs) stay ordinary exceptions.
"""

from __future__ import annotations


class TaskadaptError(Exception):
    """Base class of the errors a user can act on. ``str(err)`` is the whole message."""

    exit_code = 2


class ConfigError(TaskadaptError):
    """An unknown key, a wrong type or an unknown value in a configuration."""


class DatasetError(TaskadaptError):
    """A missing, unreadable or malformed dataset file or folder."""


class CheckpointError(TaskadaptError):
    """A missing, corrupt or foreign checkpoint file."""
