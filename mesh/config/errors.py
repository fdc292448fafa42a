"""How invalid stack config is reported: a ConfigError holding every problem of a stack file.

Models raise ConfigPathError from their cross-field `model_validator`s; `parse_config` turns all
pydantic errors into Problems, and a ConfigError carries them, one line each, every line naming
the stack and the config path (written the way `pulumi config set --path` takes it, see
`dotted_path`) so each can be read, grepped or pasted on its own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass


class ConfigPathError(ValueError):
    """A cross-field rule failed at `path` (relative to the model that raised it)."""

    def __init__(self, path: tuple[str | int, ...], message: str):
        super().__init__(message)
        self.path = path
        self.message = message


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a stack's config: where (a dotted config path, "" for the whole
    file) and what, including what would be valid. `text`, when set, is the whole report of a
    problem that is not at a config path (a YAML error: `file:line:column: ...` and the line)."""

    path: str
    message: str
    text: str = ""

    def line(self, stack: str) -> str:
        if self.text:
            return self.text
        where = f"{self.path}: " if self.path else ""
        return f"ml-mesh: invalid config for stack '{stack}': {where}{self.message}"


class ConfigError(Exception):
    """Stack config is invalid. `str()` is what a user sees at the terminal: one line per
    problem. `stack`, `path` and `problem` are those of the first problem (what most callers
    and tests read); `problems` holds all of them, `more` counts the ones after the first."""

    def __init__(self, stack: str, path: str, problem: str, more: int = 0):
        self._init(stack, (Problem(path, problem),), more)

    @classmethod
    def of(cls, stack: str, problems: Sequence[Problem]) -> ConfigError:
        """The error for several problems at once (at least one), in the order given."""
        if not problems:
            raise ValueError("a ConfigError needs at least one problem")
        error = cls.__new__(cls)
        error._init(stack, tuple(problems), len(problems) - 1)
        return error

    def _init(self, stack: str, problems: tuple[Problem, ...], more: int) -> None:
        self.stack, self.problems, self.more = stack, problems, more
        self.path, self.problem = problems[0].path, problems[0].message
        lines = [p.line(stack) for p in problems]
        if more and len(problems) == 1:  # an old-style caller that only counted the rest
            lines[0] += f" (and {more} more problem{'s' if more > 1 else ''} after this one)"
        Exception.__init__(self, "\n".join(lines))

    def lines(self) -> list[str]:
        """The report, one string per problem (a YAML problem's may span a few lines)."""
        return [p.line(self.stack) for p in self.problems]


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
