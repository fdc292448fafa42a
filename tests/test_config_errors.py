"""Deliberate mistakes in a stack, and exactly what a user is told about each.

Every problem of a stack file comes out at once, one line each (unknown keys first, then by
config path), naming the stack, the path and what would be valid; YAML mistakes as
`file:line:column: message` with the line; an unknown stack with the stacks that exist.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from mesh.config import ConfigError, fields_of, parse_config
from mesh.stackfile import PROJECT_DIR, load_stack, read_stack_document
from tests.conftest import stack_raw, with_value, without
from tests.harness import run_program, try_program

P = "ml-mesh: invalid config for stack 'dev': "
QUOTE = "quote it as you mean it (unquoted, YAML reads 007 as 7 and 1.10 as 1.1)"


def keys(*loc: str) -> str:
    """The list of valid keys a message ends with (from the schema, so adding a setting does
    not break these tests)."""
    return f"(valid keys here: {', '.join(fields_of(loc) or [])})"


def moved(raw: dict[str, Any], key: str, to: str) -> dict[str, Any]:
    """`raw` with the top-level `key` written as `to` (a typo of the key or of its prefix)."""
    out = {k: v for k, v in raw.items() if k != key}
    out[to] = raw[key]
    return out


def custom_env(raw: dict[str, Any], env: dict[str, Any]) -> dict[str, Any]:
    raw = with_value(raw, "models.sentiment.server", "custom")
    return with_value(raw, "models.sentiment.custom", {"httpPort": 8080, "env": env})


def resources(raw: dict[str, Any], limits: dict[str, Any]) -> dict[str, Any]:
    return with_value(raw, "models.sentiment.versions.v1.resources", {"limits": limits})


V1 = "models.sentiment.versions.v1"

# (what a user got wrong, the config as an edit of dev, the exact lines of the error)
CONFIG_MISTAKES = [
    (
        "top-level key misspelt",
        lambda dev: moved(dev, "gateway", "gatway"),
        [P + f"gatway: unknown setting; did you mean `gateway`? {keys()}"],
    ),
    (
        "top-level key in the wrong case",
        lambda dev: moved(dev, "gateway", "Gateway"),
        [P + f"Gateway: unknown setting; did you mean `gateway`? {keys()}"],
    ),
    (
        "project prefix without dash",
        lambda dev: moved(dev, "gateway", "mlmesh:gateway"),
        [
            P + "key `mlmesh:gateway` is not read: the project is `ml-mesh`; "
            "did you mean `ml-mesh:gateway`?"
        ],
    ),
    (
        "project prefix with underscore",
        lambda dev: moved(dev, "models", "ml_mesh:models"),
        [
            P + "key `ml_mesh:models` is not read: the project is `ml-mesh`; "
            "did you mean `ml-mesh:models`?"
        ],
    ),
    (
        "project prefix and key both misspelt",
        lambda dev: moved(dev, "storage", "ml-mseh:storag"),
        [
            P + "key `ml-mseh:storag` is not read: the project is `ml-mesh`; "
            "did you mean `ml-mesh:storage`?"
        ],
    ),
    (
        "section key misspelt, its required value not reported again",
        lambda dev: with_value(without(dev, "storage.bucket"), "storage.buckt", "acme-models"),
        [P + f"storage.buckt: unknown setting; did you mean `bucket`? {keys('storage')}"],
    ),
    (
        "model key misspelt",
        lambda dev: with_value(dev, "models.sentiment.canray", {}),
        [
            P
            + "models.sentiment.canray: unknown setting; did you mean `canary`? "
            + keys("models", "sentiment")
        ],
    ),
    (
        "canary key misspelt, weight not reported missing",
        lambda dev: with_value(
            without(dev, "models.sentiment.canary.weight"), "models.sentiment.canary.wieght", 5
        ),
        [
            P + "models.sentiment.canary.wieght: unknown setting; did you mean `weight`? "
            "(valid keys here: version, weight)"
        ],
    ),
    (
        "version key misspelt",
        lambda dev: with_value(dev, f"{V1}.replica", 2),
        [
            P
            + f"{V1}.replica: unknown setting; did you mean `replicas`? "
            + keys("models", "sentiment", "versions", "v1")
        ],
    ),
    (
        "quantity key misspelt, deep down",
        lambda dev: resources(dev, {"cpuu": "2"}),
        [
            P + f"{V1}.resources.limits.cpuu: unknown setting; did you mean `cpu`? "
            "(valid keys here: cpu, memory)"
        ],
    ),
    (
        "unknown key with nothing close",
        lambda dev: with_value(dev, "platform.zzz", 1),
        [P + f"platform.zzz: unknown setting {keys('platform')}"],
    ),
    (
        "cpu as arithmetic float",
        lambda dev: resources(dev, {"cpu": 0.1 + 0.2}),
        [
            P + f"{V1}.resources.limits.cpu: 0.30000000000000004 is finer than a thousandth: "
            'write the quantity as text in millis, e.g. "301m"'
        ],
    ),
    (
        "cpu negative",
        lambda dev: resources(dev, {"cpu": -1}),
        [
            P + f"{V1}.resources.limits.cpu: '-1' is not a Kubernetes quantity such as 500m, "
            "2, 512Mi or 4Gi"
        ],
    ),
    (
        "env value as float",
        lambda dev: custom_env(dev, {"PYTHON_VERSION": 3.10}),
        [
            P + "models.sentiment.custom.env.PYTHON_VERSION: 3.1 is a number, and YAML does "
            "not keep how it was written (3.10 reads as 3.1): quote the value as the container "
            "should see it"
        ],
    ),
    (
        "request timeout without unit",
        lambda dev: with_value(dev, "models.sentiment.timeout", 30),
        [
            P + "models.sentiment.timeout: 30 has no unit: write 30s "
            "(a duration needs a unit: ms, s, m, h)"
        ],
    ),
    (
        "fractional timeout without unit",
        lambda dev: with_value(dev, "models.sentiment.timeout", 1.5),
        [
            P + "models.sentiment.timeout: 1.5 has no unit: write 1.5s "
            "(a duration needs a unit: ms, s, m, h)"
        ],
    ),
    (
        "per-try timeout without unit",
        lambda dev: with_value(
            dev, "models.sentiment.retries", {"attempts": 2, "perTryTimeout": 2}
        ),
        [
            P + "models.sentiment.retries.perTryTimeout: 2 has no unit: write 2s "
            "(a duration needs a unit: ms, s, m, h)"
        ],
    ),
    (
        "alert duration without unit",
        lambda dev: with_value(dev, "telemetry.alerts.errorRatioFor", 5),
        [
            P + "telemetry.alerts.errorRatioFor: 5 has no unit: write 5s "
            "(a Prometheus duration needs a unit: ms, s, m, h, d, w, y)"
        ],
    ),
    (
        "namespace as number",
        lambda dev: with_value(dev, "namespace", 7),
        [P + f"namespace: 7 is a number, but a name is text: {QUOTE}"],
    ),
    (
        "image as number",
        lambda dev: with_value(dev, f"{V1}.image", 2),
        [P + f"{V1}.image: 2 is a number, but an image is text: {QUOTE}"],
    ),
    (
        "model path as number",
        lambda dev: with_value(dev, f"{V1}.modelPath", 1),
        [P + f"{V1}.modelPath: 1 is a number, but a model path is text: {QUOTE}"],
    ),
    (
        "bucket as boolean",
        lambda dev: with_value(dev, "storage.bucket", True),
        [P + f"storage.bucket: true is a boolean, but a bucket name is text: {QUOTE}"],
    ),
]


@pytest.mark.parametrize(
    ("edit", "expected"),
    [m[1:] for m in CONFIG_MISTAKES],
    ids=[m[0] for m in CONFIG_MISTAKES],
)
def test_config_mistake_gets_exactly_these_lines(dev, edit, expected):
    with pytest.raises(ConfigError) as caught:
        parse_config(edit(dev), "dev")
    assert str(caught.value).splitlines() == expected


def test_every_problem_of_a_stack_comes_out_at_once_unknown_keys_first_then_by_path(dev):
    raw = moved(dev, "gateway", "gatway")
    raw = with_value(raw, "storage.region", "europe")
    raw = with_value(raw, "namespace", "ML")
    raw = with_value(raw, "models.sentiment.timeout", 30)
    raw = with_value(raw, "models.sentiment.canray", {})
    raw = with_value(raw, f"{V1}.replicas", -1)
    raw = {**raw, "mlmesh:protected": True}
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, "dev")
    error = caught.value
    assert [p.path for p in error.problems] == [
        "gatway",
        "",  # mlmesh:protected, sorted by its key: after gatway, before models...
        "models.sentiment.canray",
        "models.sentiment.timeout",
        f"{V1}.replicas",
        "namespace",
        "storage.region",
    ]
    lines = str(error).splitlines()
    assert len(lines) == 7 and all(line.startswith(P) for line in lines)
    assert lines[1] == (
        P + "key `mlmesh:protected` is not read: the project is `ml-mesh`; "
        "did you mean `ml-mesh:protected`?"
    )
    assert not any("gateway: is required" in line for line in lines)
    assert (error.stack, error.path, error.more) == ("dev", "gatway", 6)


@pytest.mark.parametrize("key", ["aws:region", "kubernetes:context", "pulumi:tags"])
def test_other_namespaces_are_left_alone(dev, tmp_path, key):
    text = (PROJECT_DIR / "Pulumi.dev.yaml").read_text() + f"  {key}: whatever\n"
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(text)
    assert load_stack(str(path)).config == parse_config(dev, "dev")


@pytest.mark.parametrize(
    ("key", "written", "field", "read"),
    [
        ("maxWeightStep", "40", "max_weight_step", 40),  # `config set` without --path
        ("maxWeightStep", 40, "max_weight_step", 40),
        ("protected", "false", "protected", False),
        ("namespace", "123", "namespace", "123"),  # a text field stays text
    ],
)
def test_a_top_level_value_reads_offline_as_the_program_reads_it(
    dev, tmp_path, key, written, field, read
):
    """The engine hands the program every top-level value as text, which it decodes as JSON
    except for text fields; the offline reader (render, check, diff) must agree."""
    document = yaml.safe_load((PROJECT_DIR / "Pulumi.dev.yaml").read_text())
    document["config"][f"ml-mesh:{key}"] = written
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    offline = load_stack(str(path)).config
    run, error = try_program(
        {k: v for k, v in dev.items() if k != key}, other_keys={f"ml-mesh:{key}": str(written)}
    )
    assert error is None, error
    assert getattr(offline, field) == read
    assert offline == parse_config({**dev, key: read}, "dev")
    assert run.outputs == run_program({**dev, key: read}).outputs


def _stack_file_with(tmp_path, extra: dict[str, Any]):
    document = yaml.safe_load((PROJECT_DIR / "Pulumi.dev.yaml").read_text())
    document["config"].update(extra)
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def test_the_older_key_form_with_config_is_read_as_pulumi_reads_it(tmp_path):
    """`ml-mesh:config:<key>` is `ml-mesh:<key>` to Pulumi (config.ParseKey): dropping it
    offline would hide from render, check and diff what `pulumi up` applies."""
    path = _stack_file_with(tmp_path, {"ml-mesh:config:maxWeightStep": 10})
    assert load_stack(str(path)).config.max_weight_step == 10


def test_a_key_in_both_forms_is_refused(tmp_path):
    path = _stack_file_with(tmp_path, {"ml-mesh:config:namespace": "other"})
    with pytest.raises(ConfigError) as caught:
        load_stack(str(path))
    assert "`ml-mesh:config:namespace` and `ml-mesh:namespace` are the same key" in str(
        caught.value
    )


def test_a_stack_file_that_is_a_list_says_what_a_stack_file_is(tmp_path):
    path = tmp_path / "Pulumi.t.yaml"
    path.write_text("- a\n")
    with pytest.raises(ConfigError) as caught:
        load_stack(str(path))
    assert "the file is a YAML list; a stack file is a mapping with a `config:` key" in str(
        caught.value
    )


# --- numbers where text is expected, accepted where the text is unambiguous ----------------


@pytest.mark.parametrize(
    ("written", "read"),
    [(2, "2"), (0.5, "0.5"), (1.25, "1.25"), (2.0, "2"), (1e3, "1000"), (0.001, "0.001")],
)
def test_a_quantity_written_as_a_number_is_the_string_kubernetes_reads(dev, written, read):
    config = parse_config(resources(dev, {"cpu": written, "memory": 1073741824}), "dev")
    limits = config.models["sentiment"].versions["v1"].resources.limits
    assert (limits.cpu, limits.memory) == (read, "1073741824")


def test_env_values_written_as_integers_and_booleans_reach_the_container_as_text(dev):
    raw = custom_env(dev, {"WORKERS": 4, "DEBUG": True, "VERBOSE": False})
    run = run_program(raw)  # the engine passes `env` as JSON: numbers and booleans stay so
    (deployment,) = [d for d in run.of_kind("Deployment") if d["metadata"]["name"].endswith("v1")]
    (server,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if "env" in c]
    env = {e["name"]: e.get("value") for e in server["env"]}
    assert {k: env[k] for k in ("WORKERS", "DEBUG", "VERBOSE")} == {
        "WORKERS": "4",
        "DEBUG": "true",
        "VERBOSE": "false",
    }


def test_a_label_value_written_as_a_boolean_is_text(dev):
    raw = with_value(dev, "telemetry.alerts.labels", {"release": True})
    assert dict(parse_config(raw, "dev").telemetry.alerts.labels) == {"release": "true"}


def test_the_schema_says_a_quantity_may_be_a_number():
    from mesh.schema import stack_file_schema

    cpu = stack_file_schema()["$defs"]["ResourceQuantities"]["properties"]["cpu"]
    kinds = {s.get("type") for branch in cpu["anyOf"] for s in branch.get("anyOf", [branch])}
    assert {"string", "number"} <= kinds


# --- the stack file: YAML syntax, duplicate keys ----------------------------------------------

DEV_TEXT = (PROJECT_DIR / "Pulumi.dev.yaml").read_text(encoding="utf-8")


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def _with_line_after(needle: str, added: str) -> str:
    lines = DEV_TEXT.splitlines(keepends=True)
    at = _line_of(DEV_TEXT, needle)
    return "".join([*lines[:at], added, *lines[at:]])


YAML_MISTAKES = [
    (
        "duplicate key deep down",
        _with_line_after("replicas: 1", "          replicas: 3\n"),
        lambda n: [
            f"Pulumi.bad.yaml:{n('replicas: 3')}:11: duplicate key `replicas` (first at line "
            f"{n('replicas: 1')}): keep one; Pulumi refuses a key given twice, PyYAML would "
            "silently keep the last (stack 'bad')",
            f"  {n('replicas: 3')} |           replicas: 3",
            f"  {' ' * len(str(n('replicas: 3')))} |           ^",
        ],
    ),
    (
        "duplicate top-level key",
        DEV_TEXT + "  ml-mesh:namespace: other\n",
        lambda n: [
            f"Pulumi.bad.yaml:{n('namespace: other')}:3: duplicate key `ml-mesh:namespace` "
            f"(first at line {n('namespace: ml-serving')}): keep one; Pulumi refuses a key "
            "given twice, PyYAML would silently keep the last (stack 'bad')",
            f"  {n('namespace: other')} |   ml-mesh:namespace: other",
            "     |   ^",
        ],
    ),
    (
        "a colon inside a value",
        DEV_TEXT.replace("domain: models.dev.example.com", "domain: models: dev"),
        lambda n: [
            f"Pulumi.bad.yaml:{n('domain: models: dev')}:19: mapping values are not allowed "
            "here (stack 'bad')",
            f"  {n('domain: models: dev')} |     domain: models: dev",
            "    |                   ^",
        ],
    ),
    (
        "a tab for indentation",
        DEV_TEXT.replace("    bucket:", "\tbucket:"),
        lambda n: [
            f"Pulumi.bad.yaml:{n('bucket:')}:1: found character '\\t' that cannot start any "
            "token (while scanning for the next token) (stack 'bad')",
            f"  {n('bucket:')} |  bucket: acme-models-dev",
            "    | ^",
        ],
    ),
    (
        "an alias that is not defined",
        DEV_TEXT.replace("bucket: acme-models-dev", "bucket: *models"),
        lambda n: [
            f"Pulumi.bad.yaml:{n('*models')}:13: found undefined alias 'models' (stack 'bad')",
            f"  {n('*models')} |     bucket: *models",
            "    |             ^",
        ],
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [m[1:] for m in YAML_MISTAKES],
    ids=[m[0] for m in YAML_MISTAKES],
)
def test_yaml_mistake_is_reported_at_its_line_and_column(tmp_path, monkeypatch, text, expected):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "Pulumi.bad.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_stack("Pulumi.bad.yaml")
    assert str(caught.value).splitlines() == expected(lambda needle: _line_of(text, needle))


def test_a_merge_key_may_be_overridden_without_being_a_duplicate(tmp_path):
    path = tmp_path / "Pulumi.x.yaml"
    path.write_text("base: &b {a: 1, b: 2}\nother:\n  <<: *b\n  a: 3\n")
    assert read_stack_document(path, "x")["other"] == {"a": 3, "b": 2}


@pytest.mark.parametrize(("written", "read"), [("yes", "yes"), ("on", "on"), ("true", True)])
def test_only_true_and_false_are_booleans_as_pulumi_reads_stack_files(tmp_path, written, read):
    path = tmp_path / "Pulumi.x.yaml"
    path.write_text(f"config:\n  ml-mesh:flag: {written}\n")
    assert read_stack_document(path, "x")["config"]["ml-mesh:flag"] == read


def test_the_c_and_python_loaders_read_the_committed_stacks_alike():
    import yaml

    from mesh.stackfile import FastStackFileLoader, StackFileLoader

    for path in [*PROJECT_DIR.glob("Pulumi.*.yaml"), *PROJECT_DIR.glob("examples/*.yaml")]:
        text = path.read_text(encoding="utf-8")
        fast = yaml.load(text, Loader=FastStackFileLoader)
        assert fast == yaml.load(text, Loader=StackFileLoader), path


# --- stacks by name ----------------------------------------------------------------------------


def test_an_unknown_stack_lists_the_stacks_that_exist_and_where_it_looked(monkeypatch):
    monkeypatch.chdir(PROJECT_DIR)
    with pytest.raises(ConfigError) as caught:
        load_stack("prd")
    lines = str(caught.value).splitlines()
    stacks = sorted(p.name.split(".")[1] for p in PROJECT_DIR.glob("Pulumi.*.yaml"))
    examples = sorted(f"examples/{p.name}" for p in (PROJECT_DIR / "examples").glob("*.yaml"))
    assert lines == [
        f"ml-mesh: no stack 'prd': no stack file Pulumi.prd.yaml in {PROJECT_DIR}; "
        "did you mean `prod`?",
        f"  stacks there: {', '.join(stacks)}",
        f"  example stack files (give the path): {', '.join(examples)}",
    ]


def test_a_missing_stack_file_given_by_path_is_named(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_stack(str(tmp_path / "Pulumi.nope.yaml"))
    assert str(caught.value) == f"ml-mesh: no stack file {tmp_path / 'Pulumi.nope.yaml'}"


def _mesh_from(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """The CLI as the installed `ml-mesh` runs it (mesh importable), from another directory."""
    env = {**os.environ, "PYTHONPATH": str(PROJECT_DIR)}
    command = [sys.executable, "-c", "import sys; from mesh.cli import main; sys.exit(main())"]
    return subprocess.run(
        [*command, *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )


def test_a_stack_name_is_found_from_any_directory(tmp_path):
    result = _mesh_from(PROJECT_DIR / "tests", "check", "dev")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].startswith("# stack dev: ")


def test_the_cli_prints_every_problem_and_no_traceback(tmp_path):
    bad = DEV_TEXT.replace("ml-mesh:gateway:", "ml-mesh:gatway:").replace(
        "region: eu-west-1", "region: europe"
    )
    (tmp_path / "Pulumi.bad.yaml").write_text(bad, encoding="utf-8")
    result = _mesh_from(tmp_path, "render", "Pulumi.bad.yaml")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"ml-mesh: invalid config for stack 'bad': gatway: unknown setting; did you mean "
        f"`gateway`? {keys()}",
        "ml-mesh: invalid config for stack 'bad': storage.region: 'europe' is not an AWS "
        "region such as eu-west-1",
    ]


# --- the Pulumi program ------------------------------------------------------------------------


def test_the_program_stops_with_every_problem_as_one_run_error_and_registers_nothing():
    raw = with_value(moved(stack_raw("dev"), "gateway", "gatway"), "models.sentiment.timeout", 30)
    run, error = try_program(raw, other_keys={"mlmesh:protected": "true", "aws:region": "x"})
    # pulumi-language-python-exec prints a RunError's message alone (no traceback).
    assert isinstance(error, pulumi.RunError), repr(error)
    assert str(error).splitlines() == [
        P + f"gatway: unknown setting; did you mean `gateway`? {keys()}",
        P + "key `mlmesh:protected` is not read: the project is `ml-mesh`; "
        "did you mean `ml-mesh:protected`?",
        P + "models.sentiment.timeout: 30 has no unit: write 30s "
        "(a duration needs a unit: ms, s, m, h)",
    ]
    assert "Traceback" not in str(error)
    assert run.resources == []
