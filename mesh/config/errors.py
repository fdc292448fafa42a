"""How invalid stack config is reported: one ConfigError naming stack, config path and problem.

Models raise ConfigPathError from their cross-field `model_validator`s; `parse_config` turns the
first pydantic error into a ConfigError whose path `dotted_path` writes the way
`pulumi config set --path` takes it.
"""

from __future__ import annotations

import json
import re


class ConfigPathError(ValueError):
    """A cross-field rule failed at `path` (relative to the model that raised it)."""

    def __init__(self, path: tuple[str | int, ...], message: str):
        super().__init__(message)
        self.path = path
        self.message = message


class ConfigError(Exception):
    """Stack config is invalid. `str()` is the one line a user sees at the terminal."""

    def __init__(self, stack: str, path: str, problem: str, more: int = 0):
        self.stack, self.path, self.problem, self.more = stack, path, problem, more
        where = f"{path}: " if path else ""
        tail = f" (and {more} more problem{'s' if more > 1 else ''} after this one)" if more else ""
        super().__init__(f"ml-mesh: invalid config for stack '{stack}': {where}{problem}{tail}")


_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def dotted_path(loc: tuple[str | int, ...]) -> str:
    """`models.sentiment.canary.weight`; a key that is not plain is quoted the way
    `pulumi config set --path` takes it (`gateway.selector["app.kubernetes.io/name"]`), in ASCII,
    so a key holding a newline cannot break the one-line message."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not _PLAIN_KEY.match(str(part)):
            out += f"[{json.dumps(str(part))}]"
        else:
            out += f".{part}" if out else str(part)
    return out
