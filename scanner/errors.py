"""Errors a user can act on: the CLI prints their message on one line and exits non-zero."""


class ArbscanError(Exception):
    """Base for errors whose message says what is wrong and how to fix it."""


class SetupError(ArbscanError):
    """Something the set-up script installs is missing."""


class ConfigError(ArbscanError):
    """A configuration value is missing, unknown or of the wrong type."""


class ChainError(ArbscanError):
    """The JSON-RPC node could not be reached or answered with an error."""
