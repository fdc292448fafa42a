"""The base of every config model.

Keys are camelCase exactly as written in `Pulumi.<stack>.yaml` (aliases generated from the
snake_case field names, and only the aliases are accepted), unknown keys are refused, and a
validated config is frozen: builders read it, never change it.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class _Config(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        validate_by_alias=True,
        validate_by_name=False,
        serialize_by_alias=True,
    )
