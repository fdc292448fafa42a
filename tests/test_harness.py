"""The test harness reads stack outputs the way the engine receives them at the end of a run."""

from __future__ import annotations

import pulumi

from tests.harness import try_program


def test_stack_outputs_arrive_as_the_engine_receives_them_with_secrets_flagged():
    def main() -> None:
        pulumi.export("plain", {"count": 3, "ratio": 0.5, "none": None, "list": [1, "a"]})
        pulumi.export("token", {"inner": pulumi.Output.secret("s3cr3t")})
        pulumi.export("later", pulumi.Output.from_input("x").apply(lambda v: v * 2))

    run, error = try_program({}, main=main)
    assert error is None
    assert run.outputs == {
        "plain": {"count": 3, "ratio": 0.5, "none": None, "list": [1, "a"]},
        "token": {"inner": "s3cr3t"},
        "later": "xx",
    }
    assert type(run.outputs["plain"]["count"]) is int  # protobuf numbers are floats
    assert run.secret_outputs == {"token"}
