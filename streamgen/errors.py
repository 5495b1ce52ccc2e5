"""One root exception and one-line subclasses."""

from __future__ import annotations


class StreamgenError(Exception):
    """Root of every error raised on purpose by streamgen."""


class ConfigError(StreamgenError):
    """A pipeline setting or CLI argument is invalid; the message names the field."""


class DecodeError(StreamgenError):
    """A record cannot be decoded; it goes to the dead-letter sink with this reason."""


class CheckpointError(StreamgenError):
    """A checkpoint cannot be written or read."""


class SinkError(StreamgenError):
    """A sink failed to flush; the checkpoint that depends on it is aborted."""


class SourceError(StreamgenError):
    """A source cannot deliver records (broker unreachable, file unreadable)."""
