"""The scale benchmark compares like with like: its floor registers exactly the Kubernetes
resources the program registers, with the same inputs. (No timing here: bench/bench.py
measures and prints the numbers.)"""

from __future__ import annotations

import pytest

from bench.bench import floor_program, measured, selected, stack_config
from mesh.config import parse_config
from mesh.plan import build_plan
from tests.harness import run_program, try_program


def _registered(run) -> list[tuple[tuple[str, str], dict]]:
    return sorted(((r.type, r.name), r.object()) for r in run.kubernetes)


def test_the_floor_registers_exactly_the_programs_kubernetes_resources():
    raw = stack_config(4)
    program_run = run_program(raw, stack="bench")
    objects = build_plan(parse_config(raw, "bench")).objects()
    floor_run, error = try_program(raw, stack="bench", main=floor_program(objects))
    assert error is None
    assert _registered(floor_run) == _registered(program_run)
    assert len(floor_run.resources) == len(objects)  # bare: no components, nothing else
    extra = [r for r in program_run.resources if not r.custom]
    assert len(extra) == len(program_run.resources) - len(objects)  # the components alone


@pytest.mark.parametrize(
    ("only", "measured_names"),
    [
        (None, ("program", "floor", "render", "yaml", "diff")),
        (["render"], ("render", "yaml")),
        (["program"], ("program", "floor")),
        (["diff"], ("render", "yaml", "diff")),  # the diff's target is relative to a render
    ],
)
def test_only_selects_the_named_measurements_and_what_they_are_compared_with(only, measured_names):
    assert measured(selected(only)) == measured_names
