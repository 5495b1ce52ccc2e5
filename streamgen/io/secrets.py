"""Secret values in settings: ``env:NAME`` reads an environment variable and ``file:/path`` a
file (its text, stripped), at start-up and here at the edge (never in ``streamgen/core``).

One resolver serves every section that takes secrets: ``kafka.security``
(:func:`streamgen.io.kafka.resolve_security`) and the object-store credentials under
``checkpoint`` (:mod:`streamgen.io.store`). Error messages name the field, never the value.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from streamgen.errors import ConfigError

__all__ = ["resolve_secrets"]


def resolve_secrets(
    values: Mapping[str, Any],
    section: str,
    known: Collection[str] | None = None,
    unknown: str = "unknown option",
) -> dict[str, Any]:
    """``values`` with every ``env:NAME`` / ``file:/path`` string replaced by what it names.

    Parameters
    ----------
    values
        Setting name → value; other values pass through unchanged.
    section
        Dotted prefix naming the settings in error messages (``kafka.security``).
    known
        The names accepted, or None for any; another name raises ``ConfigError`` with the
        text ``unknown``.

    Raises
    ------
    ConfigError
        On an unknown name, an unset variable or an unreadable file; the message names the
        field (``section.name``) and never contains a secret.

    Examples
    --------
    >>> import os
    >>> os.environ["SG_DOCTEST_KEY"] = "k3y"
    >>> resolve_secrets({"s3_access_key": "env:SG_DOCTEST_KEY", "s3_region": "eu"}, "checkpoint")
    {'s3_access_key': 'k3y', 's3_region': 'eu'}
    >>> del os.environ["SG_DOCTEST_KEY"]
    >>> resolve_secrets({"s3_secret_key": "env:SG_DOCTEST_KEY"}, "checkpoint")
    Traceback (most recent call last):
    streamgen.errors.ConfigError: checkpoint.s3_secret_key: environment variable SG_DOCTEST_KEY is not set
    """
    out: dict[str, Any] = {}
    for key, value in values.items():
        field = f"{section}.{key}"
        if known is not None and key not in known:
            raise ConfigError(f"{field}: {unknown}")
        if isinstance(value, str) and value.startswith("env:"):
            name = value[4:]
            if name not in os.environ:
                raise ConfigError(f"{field}: environment variable {name} is not set")
            value = os.environ[name]
        elif isinstance(value, str) and value.startswith("file:"):
            path = Path(value[5:]).expanduser()
            try:
                value = path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"{field}: cannot read {path}: {exc.strerror}") from None
        out[key] = value
    return out
