"""Scale benchmark: the Pulumi program under mocks and `render`, against a floor with no logic.

    python bench/bench.py                 # 10, 100, 300 models x 3 versions, best of 3 runs
    python bench/bench.py --models 10 50 --repeat 5

For each size it times, in one process on one machine:
- program: `mesh.program.main` under the test harness's Pulumi mocks (config parsing, plan,
  mesh checks, ComponentResources, dependencies, secrets);
- floor:   the same mocks registering the same number of resources, each the same
  pulumi-kubernetes class with the same inputs, built before the clock starts: what Pulumi
  itself costs, with no ml-mesh logic;
- render:  `python -m mesh render <file> -q` in-process (read the stack file, parse, plan,
  checks, mask secrets, YAML), output discarded;
- yaml floor: dumping the same objects, built before the clock starts, with the same dumper.

It prints objects, seconds, seconds per object and the ratio to the floor, then checks the
targets: ratio <= 1.25, and linear growth (300 models within 3x +- 15% of 100 models).
Exit status 1 if a target is missed. Timings are the best of --repeat runs (least noise).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pulumi_kubernetes as k8s

from mesh import cli, program
from mesh.config import parse_config
from mesh.plan import build_plan
from mesh.render import to_yaml
from tests.harness import try_program

VERSIONS = ("v1", "v2", "v3")
SERVERS = ("tensorflow-serving", "triton", "custom")
RATIO_TARGET = 1.25
GROWTH_TOLERANCE = 0.15


def stack_config(models: int) -> dict[str, Any]:
    """`models` models with 3 versions each: stable v1, canary v2 at 10%, v3 warm and unrouted."""

    def model(i: int) -> dict[str, Any]:
        server = SERVERS[i % len(SERVERS)]
        body: dict[str, Any] = {
            "server": server,
            "versions": {
                v: {"image": f"ghcr.io/acme/server:1.{n}.0", "modelPath": f"m{i}/{n}"}
                for n, v in enumerate(VERSIONS, start=1)
            },
            "stable": "v1",
            "canary": {"version": "v2", "weight": 10},
            "roleArn": f"arn:aws:iam::123456789012:role/m{i}-reader",
        }
        if server == "custom":
            body["custom"] = {"httpPort": 8080, "grpcPort": 9000}
        return body

    return {
        "namespace": "ml-serving",
        "gateway": {"domain": "models.example.com", "tls": {"credentialName": "models-tls"}},
        "storage": {"bucket": "acme-models", "region": "eu-west-1"},
        "models": {f"model-{i:03d}": model(i) for i in range(models)},
    }


def best_of(repeat: int, run: Callable[[], Any]) -> float:
    times = []
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def run_program(raw: dict[str, Any]) -> int:
    run, error = try_program(raw, stack="bench")
    if error is not None:
        raise error
    return len(run.resources)


def floor_program(objects: list[dict[str, Any]]) -> Callable[[], None]:
    """A Pulumi program that registers `objects` as they are: no config, no logic."""

    def main() -> None:
        for obj in objects:
            fields = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}
            cls = program.TYPED_KINDS.get((obj["apiVersion"], obj["kind"]))
            name = obj["metadata"]["name"]
            if cls is not None:
                cls(name, **{program._snake(k): v for k, v in fields.items()})
            else:
                k8s.apiextensions.CustomResource(
                    name, api_version=obj["apiVersion"], kind=obj["kind"], **fields
                )

    return main


def run_floor(raw: dict[str, Any], objects: list[dict[str, Any]]) -> int:
    run, error = try_program(raw, stack="bench", main=floor_program(objects))
    if error is not None:
        raise error
    return len(run.resources)


def render(path: Path) -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(["render", str(path), "-q"])
    assert code == 0, f"render failed for {path}"


def measure(models: int, repeat: int, directory: Path) -> dict[str, Any]:
    raw = stack_config(models)
    config = parse_config(raw, "bench")
    objects = build_plan(config).objects()
    path = directory / f"Pulumi.bench-{models}.yaml"
    path.write_text(yaml.safe_dump({"config": {f"ml-mesh:{k}": v for k, v in raw.items()}}))
    registered = run_program(raw)  # warm-up, and the count of resources the program registers
    assert run_floor(raw, objects) == len(objects)
    return {
        "models": models,
        "objects": len(objects),
        "resources": registered,
        "program": best_of(repeat, lambda: run_program(raw)),
        "floor": best_of(repeat, lambda: run_floor(raw, objects)),
        "render": best_of(repeat, lambda: render(path)),
        "yaml": best_of(repeat, lambda: to_yaml(objects)),
    }


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| models x versions | objects | what | seconds | s/object | ratio to floor |",
        "| --- | ---: | --- | ---: | ---: | ---: |",
    ]
    for row in rows:
        size = f"{row['models']} x {len(VERSIONS)}"
        for what, floor, label in (
            ("program", "floor", "program under mocks"),
            ("floor", "floor", "floor: same resources, no logic"),
            ("render", "yaml", "render"),
            ("yaml", "yaml", "floor: YAML of the same objects"),
        ):
            seconds = row[what]
            lines.append(
                f"| {size} | {row['objects']} | {label} | {seconds:.3f} | "
                f"{seconds / row['objects'] * 1000:.3f} ms | {seconds / row[floor]:.2f} |"
            )
    return "\n".join(lines)


def verdicts(rows: list[dict[str, Any]]) -> list[tuple[bool, str]]:
    found = []
    for row in rows:
        for what, floor in (("program", "floor"), ("render", "yaml")):
            ratio = row[what] / row[floor]
            found.append(
                (
                    ratio <= RATIO_TARGET,
                    f"{what} at {row['models']} models: ratio {ratio:.2f} (target <= {RATIO_TARGET})",
                )
            )
    by_size = {row["models"]: row for row in rows}
    if 100 in by_size and 300 in by_size:
        low, high = 3 * (1 - GROWTH_TOLERANCE), 3 * (1 + GROWTH_TOLERANCE)
        for what in ("program", "render"):
            growth = by_size[300][what] / by_size[100][what]
            found.append(
                (
                    low <= growth <= high,
                    f"{what} growth 100 -> 300 models: x{growth:.2f} (target {low:.2f}..{high:.2f})",
                )
            )
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, nargs="+", default=[10, 100, 300])
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (best kept)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as directory:
        rows = []
        for models in args.models:
            rows.append(measure(models, args.repeat, Path(directory)))
            print(f"# measured {models} models", file=sys.stderr)
    versions = ", ".join(f"{p} {metadata.version(p)}" for p in ("pulumi", "pulumi-kubernetes"))
    print(f"Python {sys.version.split()[0]}, {versions}, best of {args.repeat} runs")
    print(table(rows))
    results = verdicts(rows)
    for ok, text in results:
        print(f"{'ok  ' if ok else 'MISS'} {text}")
    return 0 if all(ok for ok, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
