"""The docs say what the code does: every command output they show is what the command prints
now, every link resolves, the config reference is the models', and the command sequences a
reader follows (the canary walkthrough) work in order from the shipped stack files.

When a shown output goes stale the failure names the file, the line, the command and the one
command that regenerates every block: `python -m docs` (docs/build.py).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from docs.build import (
    PROJECT_DIR,
    REGENERATE,
    all_blocks,
    blocks,
    doc_files,
    expected_body,
    parse_spec,
    run,
    stale_message,
)
from docs.pulumi_path import CommandError, apply, apply_to_project, parse_path, typed_value
from mesh.checks import check
from mesh.config import Platform, StackConfig
from mesh.config.introspection import _unwrap
from mesh.plan import build_plan
from mesh.reference import reference_rows
from mesh.stackfile import load_stack
from tests.conformance import KUBERNETES_VERSION
from tests.conftest import SHARED_DIR

DOCS = doc_files()
BLOCKS = all_blocks()


def _read(name: str) -> str:
    return (PROJECT_DIR / name).read_text()


# --- every shown output is produced by running it ----------------------------------------------


@pytest.mark.parametrize("block", BLOCKS, ids=[f"{b.where} {b.spec.command}" for b in BLOCKS])
def test_each_shown_output_is_what_the_command_prints_now(block):
    assert expected_body(block) == block.body, stale_message(block)


def test_the_docs_show_outputs_of_every_command_a_reader_meets():
    commands = {
        shlex.split(b.spec.command)[3]
        for b in BLOCKS
        if b.spec.command.startswith("python -m mesh ")
    }
    assert {"render", "check", "trace", "promql", "diff", "reference"} <= commands


def test_a_stale_block_is_reported_with_file_command_and_regenerate_command(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("<!-- output: python -m mesh trace dev | head 2 -->\n```text\n$ old\n```\n")
    (block,) = blocks(page)
    assert expected_body(block) != block.body
    message = stale_message(block).replace(str(tmp_path), "")
    assert (
        "python -m mesh trace dev" in message and REGENERATE in message and "page.md:1" in message
    )


@pytest.mark.parametrize(
    ("filters", "shown"),
    [
        (("head 2",), ["1", "2", "..."]),
        (("head 9",), ["1", "2", "3", "4", "5"]),
        (("tail 2",), ["...", "4", "5"]),
        (("lines 1-2,-1",), ["1", "2", "...", "5"]),
        (("lines 2,4",), ["...", "2", "...", "4", "..."]),
        (("grep 3",), ["3"]),
        (("upto 4",), ["1", "2", "3", "..."]),
        (("head 4", "tail 1"), ["...", "..."]),
    ],
)
def test_filters_trim_the_output_in_python(filters, shown):
    from docs.build import _filter

    lines = ["1", "2", "3", "4", "5"]
    for step in filters:
        lines = _filter(step, lines)
    assert lines == shown


@pytest.mark.parametrize(
    "marker", ["python -m mesh trace | sort", "python -m mesh trace\nretries: 2", "make render"]
)
def test_markers_that_cannot_be_run_as_written_are_refused(marker):
    from docs.build import DocsError

    with pytest.raises(DocsError):
        run(parse_spec(marker))


def test_outputs_do_not_depend_on_where_the_project_is_or_the_scratch_commit(tmp_path):
    from docs.build import mask

    commit = "0123456789abcdef0123456789abcdef01234567"
    text = f"{tmp_path}/Pulumi.dev.yaml at 0123456 and 0123456789ab, not 01234"
    assert (
        mask(text, tmp_path, commit)
        == "<project>/Pulumi.dev.yaml at <commit> and <commit>, not 01234"
    )


def test_a_command_that_exits_otherwise_than_the_marker_says_fails_the_build():
    from docs.build import DocsError

    with pytest.raises(DocsError, match="exited 0, the marker expects 1"):
        run(parse_spec("python -m mesh check dev\nexit: 1"))


# --- links ------------------------------------------------------------------------------------

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lowercase, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|<[^>]+>", "", heading.strip().lower()).replace("_", "")
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    found: set[str] = set()
    fence = ""
    for line in path.read_text().splitlines():
        ticks = len(line) - len(line.lstrip("`"))
        if fence and ticks >= len(fence) and not line.strip("`").strip():
            fence = ""
        elif not fence and ticks >= 3:
            fence = "`" * ticks
        elif not fence and line.startswith("#"):
            slug = _slug(line.lstrip("#"))
            candidate, n = slug, 0
            while candidate in found:
                n += 1
                candidate = f"{slug}-{n}"
            found.add(candidate)
    return found


def _links(path: Path) -> list[str]:
    text = re.sub(r"^(`{3,}).*?^\1", "", path.read_text(), flags=re.DOTALL | re.MULTILINE)
    return [m for m in LINK.findall(re.sub(r"`[^`\n]*`", "", text))]


@pytest.mark.parametrize("page", DOCS, ids=[str(p.relative_to(PROJECT_DIR)) for p in DOCS])
def test_every_relative_link_and_anchor_resolves(page):
    broken = []
    for target in _links(page):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        file_part, _, anchor = target.partition("#")
        resolved = (page.parent / file_part).resolve() if file_part else page
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            broken.append(f"{target}: no heading with that anchor")
    assert broken == [], f"{page.relative_to(PROJECT_DIR)}: {broken}"


def test_every_docs_page_is_linked_from_the_readme():
    linked = {
        (PROJECT_DIR / t.partition("#")[0]).resolve() for t in _links(PROJECT_DIR / "README.md")
    }
    pages = {p.resolve() for p in DOCS if p.parent.name == "docs"}
    assert pages - linked == set()


def test_the_readme_is_a_front_page():
    assert len(_read("README.md").splitlines()) <= 250


# --- the config reference ---------------------------------------------------------------------


def _model_paths(model: type, prefix: str = "") -> list[str]:
    """Every key path of the config models, walked from the pydantic fields (not the schema)."""
    from pydantic import BaseModel

    from mesh.reference import MAP_KEYS

    paths = []
    for name, field in model.model_fields.items():
        key = field.alias or name
        path = f"{prefix}{key}"
        paths.append(path)
        annotation = _unwrap(field.annotation)
        if getattr(annotation, "__origin__", None) is dict:
            value = _unwrap(annotation.__args__[1])
            if isinstance(value, type) and issubclass(value, BaseModel):
                paths += _model_paths(value, f"{path}.{MAP_KEYS.get(key, '<name>')}.")
        elif getattr(annotation, "__origin__", None) is list:
            item = _unwrap(annotation.__args__[0])
            if isinstance(item, type) and issubclass(item, BaseModel):
                paths += _model_paths(item, f"{path}[*].")
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            paths += _model_paths(annotation, f"{path}.")
    return paths


def test_the_config_reference_lists_every_key_of_the_models():
    assert [row.path for row in reference_rows()] == _model_paths(StackConfig)


def test_each_reference_note_is_for_a_real_key_whose_field_has_no_description_yet():
    from mesh.reference import NOTES

    rows = {row.path: row for row in reference_rows()}
    assert [path for path in NOTES if path not in rows] == []
    assert [path for path in NOTES if rows[path].description != NOTES[path]] == []


def test_the_config_reference_page_is_the_generated_reference():
    (block,) = [
        b for b in blocks(PROJECT_DIR / "docs/config-reference.md") if b.kind == "generated"
    ]
    assert block.spec.command == "python -m mesh reference"
    row = next(r for r in reference_rows() if r.path == "models.<model>.canary.weight")
    assert (row.type, row.default, row.allowed) == ("integer", "none", "0 to 100")
    assert f"| `{row.path}` | integer | none | 0 to 100 |" in block.body


# --- the canary walkthrough -------------------------------------------------------------------

WALKTHROUGH = re.compile(
    r"<!-- walkthrough: (?P<stack>\S+)(?: allow (?P<allow>\S+))? -->\n```bash\n(?P<body>.*?)^```",
    re.DOTALL | re.MULTILINE,
)


def _walkthroughs() -> list[tuple[str, str, str | None, str]]:
    """(where, stack, the gate the page says the steps need allowed, the bash block)."""
    found = []
    for page in DOCS:
        text = page.read_text()
        for match in WALKTHROUGH.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            where = f"{page.relative_to(PROJECT_DIR)}:{line}"
            found.append((where, match["stack"], match["allow"], match["body"]))
    return found


WALKS = _walkthroughs()


def _deploys(body: str) -> list[list[str]]:
    """The walkthrough's config commands, grouped by the `pulumi up` that deploys them."""
    groups: list[list[str]] = [[]]
    for raw in body.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("pulumi up"):
            groups.append([])
        elif line.startswith("pulumi config"):
            groups[-1].append(line)
        else:
            pytest.fail(f"walkthrough line is neither a config change nor `pulumi up`: {raw}")
    assert groups[-1] == [], "every change of the walkthrough is deployed"
    return groups[:-1]


def _git(cwd: Path, *args: str) -> None:
    from docs.build import SCRATCH_ENV

    subprocess.run(
        ["git", *args], cwd=cwd, env={**os.environ, **SCRATCH_ENV}, check=True, capture_output=True
    )


def _mesh(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [sys.executable, "-m", "mesh", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_docs_have_walkthroughs_from_the_shipped_dev_and_prod_stacks():
    # the README's loop; canary.md's loop, A/B rules and prod path; security.md;
    # flagger.md's hand-over and rollout
    assert sorted(stack for _, stack, _, _ in WALKS) == ["dev"] * 5 + ["prod"]


@pytest.mark.parametrize(("where", "stack", "allow", "body"), WALKS, ids=[w[0] for w in WALKS])
def test_each_walkthrough_step_works_in_order_from_the_shipped_stack(
    where, stack, allow, body, tmp_path
):
    """Each deploy of the walkthrough, applied in order to the shipped stack file, is a config
    that checks clean and whose `mesh diff` against the previous deploy passes every gate."""
    from docs.build import _scratch_copy

    _scratch_copy(tmp_path)
    for number, changes in enumerate(_deploys(body), 1):
        for change in changes:
            apply_to_project(tmp_path, change)
        step = f"{where}, deploy {number} ({'; '.join(changes)})"
        config = load_stack(str(tmp_path / f"Pulumi.{stack}.yaml")).config
        errors = [f for f in check(config, build_plan(config).objects()) if f.severity == "error"]
        assert errors == [], f"{step}: {errors}"
        diffed = _mesh(
            tmp_path, "diff", stack, "--base", "HEAD", *(["--allow", allow] * bool(allow))
        )
        assert diffed.returncode == 0, f"{step}: {diffed.stderr}"
        _git(tmp_path, "commit", "-qam", f"deploy {number}")


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ("30", 30),
        ("true", True),
        ("false", False),
        ("012", "012"),
        ("0", 0),
        ("12.5", "12.5"),
        ("v2", "v2"),
        ("-3", -3),
    ],
)
def test_config_set_path_types_values_as_the_pulumi_cli_does(value, stored):
    assert typed_value(value) == stored


def test_config_set_and_rm_path_edit_nested_keys():
    document = {"config": {"ml-mesh:models": {"m": {"canary": {"version": "v2", "weight": 10}}}}}
    apply(
        document,
        shlex.split(
            "pulumi config set --path 'models.m.matches.beta.headers[\"x-beta-user\"].exact' 1 -s dev"
        ),
    )
    apply(document, shlex.split("pulumi config rm --path models.m.canary -s dev"))
    apply(document, shlex.split("pulumi config set protected true -s dev"))
    assert document["config"] == {
        "ml-mesh:models": {"m": {"matches": {"beta": {"headers": {"x-beta-user": {"exact": 1}}}}}},
        "ml-mesh:protected": "true",
    }
    assert parse_path('a.b["c.d"][0].e') == ["a", "b", "c.d", 0, "e"]
    with pytest.raises(CommandError):
        apply(document, ["pulumi", "config", "set", "--secret", "k", "v", "-s", "dev"])


# --- make render ------------------------------------------------------------------------------


def test_make_render_prints_only_the_objects_on_stdout():
    """`make render | kubectl apply --dry-run=client -f -`: no make echo, no bootstrap output."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    stamp = PROJECT_DIR / "venv" / ".installed"
    requirements = [PROJECT_DIR / "requirements.txt", PROJECT_DIR / "requirements-dev.txt"]
    if not stamp.exists() or any(r.stat().st_mtime > stamp.stat().st_mtime for r in requirements):
        pytest.skip("./venv is not installed or older than the requirements: make would install")
    # As a user runs it: not as a sub-make of `make test`, which would print "Entering directory"
    # (GNU make turns on -w in sub-makes, found by MAKELEVEL).
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    result = subprocess.run(
        ["make", "render"], cwd=PROJECT_DIR, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    documents = list(yaml.safe_load_all(result.stdout))
    assert documents and all(
        isinstance(d, dict) and {"apiVersion", "kind", "metadata"} <= set(d) for d in documents
    )
    assert "# stack dev" in result.stderr  # the summary is still there, on stderr


# --- statements the prose makes, pinned ----------------------------------------------------------


def test_the_docs_name_the_kubernetes_version_the_conformance_tests_pin():
    assert re.search(rf"Kubernetes {re.escape(KUBERNETES_VERSION)}\b", _read("docs/checks.md"))


def test_the_platform_page_states_the_supported_matrix_and_every_platform_key():
    from mesh.config.platform import ISTIO_VERSIONS, KUBERNETES_VERSIONS

    page = _read("docs/platform.md")
    section = page.split("## Supported platforms", 1)[1].split("\n## ", 1)[0]
    oldest_k8s, newest_k8s = KUBERNETES_VERSIONS[0], KUBERNETES_VERSIONS[-1]
    oldest_istio, newest_istio = ISTIO_VERSIONS[0], ISTIO_VERSIONS[-1]
    assert f"**Kubernetes {oldest_k8s} to {newest_k8s}**" in section
    assert f"**Istio {oldest_istio} to {newest_istio}**" in section
    for heading in (
        f"**Kubernetes {oldest_k8s}**",
        "**Kubernetes 1.29 to 1.32**",
        f"**Kubernetes 1.33 to {newest_k8s}**",
        f"| Istio {oldest_istio}, 1.23 | Istio 1.24 to 1.26 | Istio 1.27 to {newest_istio} |",
    ):
        assert heading in section, heading
    for key in Platform.model_fields.values():
        assert f"`platform.{key.alias}`" in page, key.alias


def _layout_paths() -> list[str]:
    page = _read("docs/development.md")
    table = page.split("## Project layout", 1)[1].split("\n## ", 1)[0]
    return [
        p
        for row in table.splitlines()
        if row.startswith("| `")
        for p in re.findall(r"`([^`]+)`", row.split(" | ")[0])
    ]


def test_the_layout_table_names_only_paths_that_exist():
    assert [p for p in _layout_paths() if not (PROJECT_DIR / p).exists()] == []


def test_the_layout_table_names_every_module_of_the_project():
    listed = set(_layout_paths())
    modules = [
        str(path.relative_to(PROJECT_DIR))
        for pattern in ("mesh/*.py", "models/*.py", "docs/*.py", "tests/*.py", "policy/*.py")
        for path in sorted(PROJECT_DIR.glob(pattern))
        if path.name != "__init__.py" and not path.name.startswith("test_")
    ]
    packages = [
        "mesh/config/",
        "mesh/checks/",
        "mesh/trace/",
        ".github/workflows/",
        ".ci/run",
        "bench/bench.py",
        "examples/",
    ]
    parents = {
        m: {"/".join(m.split("/")[:i]) + "/" for i in range(1, m.count("/") + 1)}
        for m in modules + packages
    }
    missing = [m for m in modules + packages if m not in listed and not parents[m] & listed]
    assert missing == []


def test_the_development_page_says_where_shared_comes_from_and_what_skips_without_it():
    page = _read("docs/development.md")
    for source in sorted(SHARED_DIR.glob("*/SOURCE.md")) if SHARED_DIR.exists() else []:
        assert f"`../shared/{source.parent.name}/`" in page, source.parent.name
    users = sorted(
        p.name
        for p in (PROJECT_DIR / "tests").glob("test_*.py")
        if p.name != "test_docs.py" and re.search(r"shared_path|conformance", p.read_text())
    )
    assert users, "some tests read ../shared"
    for name in users:
        assert f"`tests/{name}`" in page, name
