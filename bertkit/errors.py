"""bertkit's errors: one family, so every layer (library, server, command line) can tell a user's mistake from a bug.

The command line prints any `BertkitError` as one line and exits with status 2; the server answers it as a 4xx.
"""

from __future__ import annotations


class BertkitError(Exception):
    """Something a user can fix: a bad file, setting or input. The message says what and where."""


class UsageError(BertkitError):
    """A command or call asked for something that cannot be done as asked."""


class ConfigError(BertkitError, ValueError):
    """A configuration value (or config.json) that bertkit cannot use."""


class CheckpointError(BertkitError, RuntimeError):
    """A model directory or weight file that cannot be loaded as asked."""


class ExportError(BertkitError, ValueError):
    """An export that failed its checks, or cannot be run here."""
