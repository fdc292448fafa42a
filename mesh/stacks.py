"""The project's stacks, found from its `Pulumi.<stack>.yaml` files, as the CI matrix.

The workflows run one job per stack (mesh diff, pulumi preview, pulumi up) and must not keep a
list of their own that goes stale when a stack is added: `python -m mesh stacks` lists them,
with whether each is protected (protected stacks run `pulumi preview`/`up` with the policy pack
and deploy after the others) and the name of the secret holding its cluster credentials.

Protected is read as the program reads it (mesh.protections); a stack file that does not read
at all counts as protected, the stricter choice: its jobs still run, and fail on its error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from mesh.config import ConfigError
from mesh.protections import of_config, of_raw
from mesh.stackfile import PROJECT_DIR, load_stack, raw_project_config, read_stack_document

KUBECONFIG_PREFIX = "KUBECONFIG_"


@dataclass(frozen=True)
class Stack:
    name: str
    protected: bool

    @property
    def kubeconfig_secret(self) -> str:
        """`KUBECONFIG_<STACK>`: the stack name upper-cased, every character a GitHub secret
        name cannot hold (anything but letters, digits and `_`) as `_`: `eu-prod` ->
        `KUBECONFIG_EU_PROD`."""
        return KUBECONFIG_PREFIX + re.sub(r"[^A-Z0-9_]", "_", self.name.upper())

    def to_json(self) -> dict[str, object]:
        return {
            "stack": self.name,
            "protected": self.protected,
            "kubeconfig": self.kubeconfig_secret,
        }


def _protected(path: Path) -> bool:
    try:
        return of_config(load_stack(str(path)).config).protected
    except ConfigError:
        pass
    try:
        return of_raw(
            raw_project_config(
                read_stack_document(path, path.name.removeprefix("Pulumi.").removesuffix(".yaml"))
            )
        ).protected
    except (OSError, ConfigError, ValueError, AttributeError):
        return True


def find_stacks(project_dir: Path = PROJECT_DIR) -> list[Stack]:
    """Every `Pulumi.<stack>.yaml` beside `Pulumi.yaml`, sorted by name."""
    return [
        Stack(path.name.removeprefix("Pulumi.").removesuffix(".yaml"), _protected(path))
        for path in sorted(project_dir.glob("Pulumi.*.yaml"))
    ]


def matrices(stacks: list[Stack]) -> dict[str, dict[str, list[dict[str, object]]]]:
    """GitHub matrices (`{"include": [...]}`): every stack, the protected ones, the others."""
    return {
        "all": {"include": [s.to_json() for s in stacks]},
        "protected": {"include": [s.to_json() for s in stacks if s.protected]},
        "unprotected": {"include": [s.to_json() for s in stacks if not s.protected]},
    }
