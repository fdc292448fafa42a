"""Scale benchmark: the Pulumi program under mocks and `render`, against a floor with no logic.

    python bench/bench.py                 # 10, 100, 300 models x 3 versions, best of 3 runs
    python bench/bench.py --models 10 50 --repeat 5
    python bench/bench.py --only render  # one pair (render and its YAML floor), targets of it

For each size it times:
- program: `mesh.program.main` under the test harness's Pulumi mocks (config parsing, plan,
  mesh checks, ComponentResources, dependencies, secrets, stack outputs);
- floor:   the same mocks registering the same number of resources, each the same
  pulumi-kubernetes class with the same inputs, built before the clock starts: what Pulumi
  itself costs, with no ml-mesh logic;
- render:  `python -m mesh render <file> -q` in-process (read the stack file, parse, plan,
  checks, mask secrets, YAML), output discarded;
- yaml floor: dumping the same objects, built before the clock starts, with PyYAML's C emitter
  as it comes (`yaml.CSafeDumper`, same width and block style): what YAML itself costs;
- diff:    `python -m mesh diff bench-<n> --base HEAD`, in-process, in a git repository that
  holds a copy of this checkout (committed files and untracked ones, as they are now) and the
  stack committed at HEAD; the working tree shifts one canary weight by 10 points. The diff
  exports HEAD with `git archive` and renders the base there in a fresh interpreter (see
  mesh/gitbase.py): that process (start, imports, render) is part of what a user waits for, so
  the diff's seconds count it: CPU is this process's plus its children's (git, the base
  render), wall is the elapsed time. Its target is relative to one render of the same size.

How, so that the numbers mean something on a shared machine:
- every run is a fresh Python process: no run inherits another's heap, caches or threads;
- each process first runs the same code on 3 models (lazy imports, source-line caches), then
  `gc.collect()` and `gc.freeze()`, so no collection rescans the modules and caches; the inputs
  of the run (the floors' prebuilt objects) stay tracked, like any program's data;
- program and floor (render and YAML) alternate which goes first, so a change of load on the
  machine hits both;
- seconds are the process's CPU time (all threads), best of --repeat runs. Under mocks all the
  work is CPU in one process, so on an idle machine CPU time equals wall time (both are
  printed); on a busy one wall time also counts the time other processes had the CPU;
- every measurement is made twice: with the garbage collector on, as Pulumi runs, and off, as
  `timeit` measures. A full collection rescans every live object; it runs once the objects
  promoted to the oldest generation since the last one exceed a quarter of those that survived
  it, so how many a run gets is a step function of what it allocates, and at 300 models each
  is about 3% of the run. With the collector off, what remains is the work itself.

It prints objects, seconds, seconds per object and the ratio to the floor, then checks the
targets on both measurements: program <= 1.25x its floor, render <= 1.3x the YAML floor, diff
<= 2.5x one render at 300 models (CPU and wall; smaller sizes shown, not judged), and linear
growth (300 models within 3x +- 15% of 100 models; the floors' own growth is printed, not
judged). Exit status 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import os
import resource
import shutil
import subprocess
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
from tests.harness import try_program

VERSIONS = ("v1", "v2", "v3")
SERVERS = ("tensorflow-serving", "triton", "custom")
GROWTH_TOLERANCE = 0.15
DIFF_TARGET_MODELS = 300  # issue 11: "`mesh diff` at 300 models <= 2.5x one render"
WARM_UP_MODELS = 3
# (what, what it is compared with, target ratio): each pair is timed in alternating order.
PAIRS = (("program", "floor", 1.25), ("render", "yaml", 1.3), ("diff", "render", 2.5))
LABELS = {
    "program": "program under mocks",
    "floor": "floor: same resources, no logic",
    "render": "render",
    "yaml": "floor: YAML of the same objects (yaml.CSafeDumper)",
    "diff": "diff, one weight shifted (base render included)",
}
MEASURED = tuple(dict.fromkeys(name for pair in PAIRS for name in pair[:2]))
PROJECT = Path(__file__).resolve().parent.parent
GIT_ENV = {
    "GIT_AUTHOR_NAME": "ml-mesh bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "ml-mesh bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
}
# Suffix of a row's keys, and how the verdicts name the measurement.
COLLECTOR = {True: ("", ""), False: (" gc off", ", GC off")}


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


def stack_file(models: int, canary_weight: int = 10) -> str:
    raw = stack_config(models)
    raw["models"]["model-000"]["canary"]["weight"] = canary_weight
    return yaml.safe_dump({"config": {f"ml-mesh:{k}": v for k, v in raw.items()}})


def diff_repo(models: int, into: Path) -> Path:
    """A git repository with a copy of this checkout and the `bench-<n>` stacks (n = models and
    the warm-up size) committed at HEAD; the working tree moves model-000's canary 10 -> 20%."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=PROJECT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    repo = into / "repo"
    for name in filter(None, listed.split("\0")):
        source = PROJECT / name
        if source.is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, repo / name)
    sizes = sorted({WARM_UP_MODELS, models})
    for size in sizes:
        (repo / f"Pulumi.bench-{size}.yaml").write_text(stack_file(size))
    git = lambda *args: subprocess.run(  # noqa: E731
        ["git", *args], cwd=repo, env={**os.environ, **GIT_ENV}, capture_output=True, check=True
    )
    git("init", "-q")
    git("add", "-A")
    git("commit", "-q", "-m", "bench base")
    for size in sizes:
        (repo / f"Pulumi.bench-{size}.yaml").write_text(stack_file(size, canary_weight=20))
    return repo


def _diff(stack: str) -> None:
    with contextlib.redirect_stdout(io.StringIO()) as out:
        code = cli.main(["diff", stack, "--base", "HEAD"])
    assert code == 0 and "model-000" in out.getvalue(), f"diff failed for {stack}"


def _run_mocked(raw: dict[str, Any], main: Callable[[], None] | None = None) -> None:
    _, error = try_program(raw, stack="bench", main=main)
    if error is not None:
        raise error


def _render(path: Path) -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(["render", str(path), "-q"])
    assert code == 0, f"render failed for {path}"


def prepare(what: str, models: int, directory: Path) -> Callable[[], None]:
    """Everything a measurement needs that is not part of what is measured."""
    raw = stack_config(models)
    if what == "program":
        return lambda: _run_mocked(raw)
    if what == "render":
        path = directory / f"Pulumi.bench-{models}.yaml"
        path.write_text(stack_file(models))
        return lambda: _render(path)
    if what == "diff":  # run by the copy of this file in the repository (see measure_in_child)
        return lambda: _diff(f"bench-{models}")
    objects = build_plan(parse_config(raw, "bench")).objects()
    if what == "floor":
        main = floor_program(objects)
        return lambda: _run_mocked(raw, main)
    if what == "yaml":
        return lambda: yaml.dump_all(
            objects, Dumper=yaml.CSafeDumper, sort_keys=False, default_flow_style=False, width=100
        )
    raise ValueError(what)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure_once(what: str, models: int, collector: bool) -> dict[str, float]:
    """One timed run of `what` in this (fresh) process, with the garbage collector on or off."""
    with tempfile.TemporaryDirectory() as directory:
        prepare(what, WARM_UP_MODELS, Path(directory))()
        # What every run starts from (modules, caches) is set aside: no collection rescans it.
        gc.collect()
        gc.freeze()
        # The run's inputs stay tracked: a floor's prebuilt objects are data its program holds,
        # scanned by the collector as the program's own plan is.
        run = prepare(what, models, Path(directory))
        gc.collect()
        if not collector:
            gc.disable()
        wall, cpu, children = time.perf_counter(), time.process_time(), _children_cpu()
        run()
        cpu = time.process_time() - cpu + _children_cpu() - children
        return {"cpu": cpu, "wall": time.perf_counter() - wall}


def measure_in_child(
    what: str, models: int, collector: bool, repo: Path | None = None
) -> dict[str, float]:
    """One measurement in a fresh process; the diff's runs the copy of this file in `repo`, so
    that it imports the repository's code and diffs the repository's stacks."""
    script = repo / "bench" / "bench.py" if what == "diff" and repo else Path(__file__)
    command = [sys.executable, str(script), "--one", what, "--models", str(models)]
    done = subprocess.run(
        command if collector else [*command, "--gc-off"],
        cwd=script.parent.parent,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{what} at {models} models failed:\n{done.stderr}")
    return json.loads(done.stdout.splitlines()[-1])


def measure(models: int, repeat: int, pairs: tuple = PAIRS) -> dict[str, Any]:
    """Best CPU seconds (and best wall seconds) of each measurement of `pairs`, collector on and
    off. The diff is relative to one render, so `pairs` holding the diff's holds the render's."""
    objects = len(build_plan(parse_config(stack_config(models), "bench")).objects())
    runs: dict[tuple[str, bool], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="ml-mesh-bench-") as directory:
        repo = diff_repo(models, Path(directory)) if "diff" in measured(pairs) else None
        for attempt in range(repeat):
            for collector in COLLECTOR:
                order = [w for what, floor, _ in pairs for w in (what, floor)]
                for what in dict.fromkeys(order if attempt % 2 else reversed(order)):
                    timing = measure_in_child(what, models, collector, repo)
                    runs.setdefault((what, collector), []).append(timing)
    row: dict[str, Any] = {"models": models, "objects": objects}
    for (what, collector), timings in runs.items():
        key = what + COLLECTOR[collector][0]
        row[key] = min(t["cpu"] for t in timings)
        row[f"{key} wall"] = min(t["wall"] for t in timings)
    return row


def selected(only: list[str] | None) -> tuple:
    """The pairs `--only` names (all by default), with the render when the diff is named: the
    diff's target is relative to one render."""
    if not only:
        return PAIRS
    names = set(only) | ({"render"} if "diff" in only else set())
    return tuple(pair for pair in PAIRS if pair[0] in names)


def measured(pairs: tuple) -> tuple[str, ...]:
    """What `pairs` measure, in the table's order."""
    return tuple(dict.fromkeys(name for pair in pairs for name in pair[:2]))


def table(rows: list[dict[str, Any]], pairs: tuple = PAIRS) -> str:
    lines = [
        "| models x versions | objects | what | CPU s | wall s | CPU per object | ratio to floor "
        "| CPU s, GC off | ratio, GC off |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    compared = {what: floor for what, floor, _ in pairs}
    for row in rows:
        size = f"{row['models']} x {len(VERSIONS)}"
        for name in measured(pairs):
            seconds, off = row[name], row[f"{name} gc off"]
            floor = compared.get(name)
            ratio = f"{seconds / row[floor]:.2f}" if floor else "-"
            ratio_off = f"{off / row[f'{floor} gc off']:.2f}" if floor else "-"
            lines.append(
                f"| {size} | {row['objects']} | {LABELS[name]} | {seconds:.3f} | "
                f"{row[f'{name} wall']:.3f} | "
                f"{seconds / row['objects'] * 1000:.3f} ms | {ratio} | {off:.3f} | {ratio_off} |"
            )
    return "\n".join(lines)


def _verdict(judged: bool, met: bool, text: str, target: float) -> tuple[bool, str]:
    if not judged:
        return True, f"{text} (shown: the target is set at {DIFF_TARGET_MODELS} models)"
    return met, f"{text} (target <= {target})"


def verdicts(rows: list[dict[str, Any]], pairs: tuple = PAIRS) -> list[tuple[bool, str]]:
    """The targets of `pairs`, with the collector on (as Pulumi runs) and off (the work alone)."""
    found = []
    by_size = {row["models"]: row for row in rows}
    low, high = 3 * (1 - GROWTH_TOLERANCE), 3 * (1 + GROWTH_TOLERANCE)
    for suffix, label in COLLECTOR.values():
        for row in rows:
            for what, floor, target in pairs:
                # The diff's target is set at DIFF_TARGET_MODELS (issue 11): below it the base
                # render's fixed cost (a fresh interpreter and its imports, about half a second)
                # outweighs one render of a small stack, so its ratio is shown, not judged.
                judged = what != "diff" or row["models"] >= DIFF_TARGET_MODELS
                ratio = row[what + suffix] / row[floor + suffix]
                text = f"{what} at {row['models']} models{label}: {ratio:.2f}x {floor}"
                found.append(_verdict(judged, ratio <= target, text, target))
                if what == "diff":  # what a user waits for: the base render runs beside it
                    ratio = row[f"{what}{suffix} wall"] / row[f"{floor}{suffix} wall"]
                    text = f"{what} at {row['models']} models{label}, wall: {ratio:.2f}x {floor}"
                    found.append(_verdict(judged, ratio <= target, text, target))
        if 100 not in by_size or 300 not in by_size:
            continue
        for what, floor, _ in pairs:
            if what == "diff":  # relative to a render, not a size: no growth target
                continue
            for name in (what, floor):
                growth = by_size[300][name + suffix] / by_size[100][name + suffix]
                text = f"{name} growth 100 -> 300 models{label}: x{growth:.2f}"
                if name == floor:  # Pulumi's or PyYAML's growth: shown, not judged
                    found.append((True, f"{text} (for comparison)"))
                else:
                    found.append((low <= growth <= high, f"{text} (target {low:.2f}..{high:.2f})"))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, nargs="+", default=[10, 100, 300])
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (best kept)")
    parser.add_argument("--one", choices=MEASURED, help=argparse.SUPPRESS)
    parser.add_argument("--gc-off", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--only",
        nargs="+",
        choices=[what for what, _, _ in PAIRS],
        help="measure only these, each with what it is compared with (diff: with the render), "
        "and check only their targets (default: all)",
    )
    args = parser.parse_args(argv)
    if args.one:  # a child process: one measurement, JSON on stdout
        print(json.dumps(measure_once(args.one, args.models[0], not args.gc_off)))
        return 0
    load = os.getloadavg()[0]
    pairs = selected(args.only)
    rows = []
    for models in args.models:
        rows.append(measure(models, args.repeat, pairs))
        print(f"# measured {models} models", file=sys.stderr)
    versions = ", ".join(f"{p} {metadata.version(p)}" for p in ("pulumi", "pulumi-kubernetes"))
    print(
        f"Python {sys.version.split()[0]}, {versions}, {os.cpu_count()} CPUs, "
        f"load average {load:.2f} at start, {os.getloadavg()[0]:.2f} at end; "
        f"best of {args.repeat} runs, each in a fresh process"
    )
    print(table(rows, pairs))
    results = verdicts(rows, pairs)
    for ok, text in results:
        print(f"{'ok  ' if ok else 'MISS'} {text}")
    return 0 if all(ok for ok, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
