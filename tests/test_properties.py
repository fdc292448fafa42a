"""Property-based tests: no config, however odd, gets past ml-mesh into a broken deploy.

(a) Any stack file the JSON Schema accepts either renders to objects that pass the conformance
    validator (tests/conformance.py) and the mesh checks without an error, or is refused with
    one clean ConfigError, or (what only the merged objects show, such as a limit below the
    server preset's request) with MESH0010 findings that each name the config key to edit.
(b) Mutated and malformed configs (wrong types, unknown and missing keys, out-of-range and huge
    numbers, odd unicode, huge strings, misplaced secrets) never raise anything but ConfigError,
    through the parser, the stack-file reader and the Pulumi program alike.

The default run is short (see EXAMPLES); set ML_MESH_HYPOTHESIS_EXAMPLES=2000 for a long one.
Run with `--hypothesis-show-statistics` to see how many examples ran.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import jsonschema
import pulumi
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from mesh.checks import check, errors
from mesh.config import ConfigError, engine_value, parse_config
from mesh.plan import build_plan
from mesh.render import render_objects, to_yaml
from mesh.schema import stack_file_schema
from mesh.stackfile import load_stack, raw_project_config
from tests import conformance
from tests.conftest import PROJECT_DIR, STACK_SOURCES, shared_path
from tests.harness import stack_config as stack_config_text
from tests.harness import try_program


def examples(default: int) -> int:
    """Examples per property: the default keeps the suite fast; the env var makes a long run."""
    return int(os.environ.get("ML_MESH_HYPOTHESIS_EXAMPLES", default))


SETTINGS = {
    "deadline": None,  # the first example pays for imports and schema loading
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}
CONFIG_ERROR_PREFIX = "ml-mesh: invalid config for stack 'fuzz': "


def assert_clean_refusal(error: BaseException) -> None:
    """One ConfigError holding every problem, one line each naming the stack (a YAML problem:
    `file:line:column: message (stack ...)` and then the offending line, indented)."""
    assert isinstance(error, ConfigError), repr(error)
    message = str(error)
    assert "Traceback" not in message, message
    assert message == "\n".join(error.lines()) and error.problems, message
    for problem in error.problems:
        first, *excerpt = problem.line("fuzz").split("\n")
        if problem.text:  # a YAML problem
            assert first.endswith("(stack 'fuzz')"), message
            assert all(line.startswith("  ") for line in excerpt), message
        else:
            assert first.startswith(CONFIG_ERROR_PREFIX) and not excerpt, message


# --- (a) configs within the schema -------------------------------------------------------------


def _mostly(valid: st.SearchStrategy, odd: st.SearchStrategy) -> st.SearchStrategy:
    """Valid values 39 times in 40, so most examples (with some 20 such fields) get past config
    validation and reach render and the validators; the rest probe the refusals."""
    # 17, not 0: Hypothesis favours the bounds of a range, and shrinks towards 0 (valid).
    return st.integers(0, 39).flatmap(lambda n: odd if n == 17 else valid)


ODD_TEXT = st.text(max_size=80)
dns_label = _mostly(st.from_regex(r"[a-z]([a-z0-9-]{0,14}[a-z0-9])?", fullmatch=True), ODD_TEXT)
version_name = _mostly(st.from_regex(r"v[0-9]{1,3}|[a-z][a-z0-9]{0,6}", fullmatch=True), ODD_TEXT)
domain = _mostly(
    st.from_regex(r"([a-z][a-z0-9-]{0,12}[a-z0-9]\.){1,3}[a-z]{2,6}", fullmatch=True), ODD_TEXT
)
quantity = _mostly(
    st.from_regex(r"[1-9][0-9]{0,3}(m|Mi|Gi|Ki)?|0\.[0-9]{1,2}", fullmatch=True), ODD_TEXT
)
image = _mostly(
    st.builds(
        "{}:{}".format,
        st.sampled_from(
            ["tensorflow/serving", "nvcr.io/nvidia/tritonserver", "ghcr.io/acme/model-server"]
        ),
        st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True),
    ),
    st.sampled_from(["tensorflow/serving", "x:latest", "UPPER/case:1", "a@sha256:00"]),
)
model_path = _mostly(
    st.from_regex(r"[a-z0-9]{1,8}(/[a-z0-9._-]{1,8}){0,3}", fullmatch=True), ODD_TEXT
)
role_arn = _mostly(
    st.from_regex(r"arn:aws:iam::[0-9]{12}:role/[a-z][a-z0-9-]{0,30}", fullmatch=True), ODD_TEXT
)
port = st.integers(1, 65535)


def optional(strategy: st.SearchStrategy) -> st.SearchStrategy:
    """A key that is either absent (None, dropped by `_compact`) or set."""
    return st.one_of(st.none(), strategy)


def _compact(node: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in node.items() if v is not None}


resources = st.builds(
    lambda requests, limits, gpu: _compact({"requests": requests, "limits": limits, "gpu": gpu}),
    optional(st.builds(lambda c, m: _compact({"cpu": c, "memory": m}), optional(quantity), optional(quantity))),
    optional(st.builds(lambda c, m: _compact({"cpu": c, "memory": m}), optional(quantity), optional(quantity))),
    optional(st.integers(0, 16)),
)  # fmt: skip
version = st.builds(
    lambda image, path, replicas, res: _compact(
        {"image": image, "modelPath": path, "replicas": replicas, "resources": res}
    ),
    image,
    model_path,
    optional(st.integers(0, 1000)),
    optional(resources),
)
custom = st.builds(
    lambda http, grpc, ready, args, env, uid, model_dir: _compact(
        {
            "httpPort": http,
            "grpcPort": grpc,
            "readinessPath": ready,
            "args": args,
            "env": env,
            "runAsUser": uid,
            "modelDir": model_dir,
        }
    ),
    optional(port),
    optional(port),
    optional(_mostly(st.from_regex(r"/[a-z0-9/_-]{0,20}", fullmatch=True), ODD_TEXT)),
    optional(st.lists(st.text(max_size=40), max_size=3)),
    optional(
        st.dictionaries(
            st.from_regex(r"[A-Z_][A-Z0-9_]{0,10}", fullmatch=True),
            st.text(max_size=40),
            max_size=3,
        )
    ),
    optional(st.integers(1, 2**31 - 1)),
    optional(st.sampled_from(["/models", "/data/model", "/", "/tmp", "/srv/m"])),
)


@st.composite
def model(draw) -> dict[str, Any]:
    versions = draw(st.dictionaries(version_name, version, min_size=1, max_size=3))
    names = sorted(versions)
    known_or_odd = _mostly(st.sampled_from(names), version_name)
    server = draw(st.sampled_from(["tensorflow-serving", "triton", "custom"]))
    body = {
        "server": server,
        "versions": versions,
        "stable": draw(known_or_odd),
        "canary": draw(
            optional(st.fixed_dictionaries({"version": known_or_odd, "weight": st.integers(0, 100)}))
        ),
        "resources": draw(optional(resources)),
        "roleArn": draw(optional(role_arn)),
        "hosts": draw(optional(st.lists(domain, min_size=1, max_size=2))),
        "diskSize": draw(optional(quantity)),
        # A custom block belongs to server 'custom' (mostly); elsewhere it must be refused.
        "custom": draw(_mostly(st.just(None), custom) if server != "custom" else _mostly(custom, st.none())),
    }  # fmt: skip
    return _compact(body)


stack_config = st.builds(
    lambda namespace, gateway, storage, istio, models, protected: _compact(
        {
            "namespace": namespace,
            "protected": protected,
            "gateway": gateway,
            "storage": storage,
            "istio": istio,
            "models": models,
        }
    ),
    optional(dns_label),
    st.builds(
        lambda name, dom, tls, selector: _compact(
            {"name": name, "domain": dom, "tls": tls, "selector": selector}
        ),
        optional(dns_label),
        domain,
        optional(
            st.builds(
                lambda cred, redirect: _compact({"credentialName": cred, "httpsRedirect": redirect}),
                dns_label,
                optional(st.booleans()),
            )
        ),
        optional(st.dictionaries(st.sampled_from(["istio", "app"]), dns_label, min_size=1)),
    ),
    st.fixed_dictionaries(
        {
            "bucket": _mostly(st.from_regex(r"[a-z0-9][a-z0-9-]{1,20}[a-z0-9]", fullmatch=True), ODD_TEXT),
            "region": _mostly(st.sampled_from(["eu-west-1", "us-east-1", "ap-southeast-2"]), ODD_TEXT),
        }
    ),
    optional(
        st.builds(
            lambda api, rev, native: _compact({"apiVersion": api, "revision": rev, "nativeSidecars": native}),
            optional(st.sampled_from(["v1", "v1beta1", "v1alpha3"])),
            optional(dns_label),
            optional(st.booleans()),
        )
    ),
    st.dictionaries(dns_label, model(), min_size=1, max_size=4),
    optional(st.booleans()),
)  # fmt: skip


def stack_document(raw: dict[str, Any]) -> dict[str, Any]:
    return {"config": {f"ml-mesh:{key}": value for key, value in raw.items()}}


@pytest.fixture(scope="module")
def schema_validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(stack_file_schema())


@settings(max_examples=examples(60), **SETTINGS)
@given(raw=stack_config)
def test_schema_valid_configs_deploy_cleanly_or_are_refused_with_one_message(raw, schema_validator):
    shared_path("istio")
    assert list(schema_validator.iter_errors(stack_document(raw))) == []  # within the schema
    try:
        config = parse_config(raw, "fuzz")
    except ConfigError as error:
        assert_clean_refusal(error)
        event("refused with a ConfigError")
        return
    objects = build_plan(config).objects()
    if refused := errors(check(config, objects)):
        # Two refusals a schema-valid config can earn: requests above limits after the preset
        # merge (Kubernetes refuses them), and a protected stack breaking a rule of the policy
        # pack (a canary above its cap, mTLS loosened: the pack's purpose). Any other error
        # from a schema-valid config would be a builder bug: not accepted here.
        kubernetes = [f for f in refused if f.code == "MESH0010"]
        pack = [f for f in refused if f.code.startswith("POLICY/")]
        assert len(kubernetes) + len(pack) == len(refused), refused
        assert all("validateResourceRequirements" in f.message for f in kubernetes), refused
        assert all(f.path and f.path.startswith("models.") for f in kubernetes), refused
        assert not pack or config.protected, refused
        assert all(f.path for f in pack), refused
        assert all("\n" not in str(f) for f in refused), refused
        event("refused by a Kubernetes check" if kubernetes else "refused by the policy pack")
        return
    event("rendered and validated")
    assert [p for obj in objects for p in conformance.problems(obj)] == []
    assert yaml.safe_load_all(to_yaml(render_objects(config, set()))) is not None


# --- (b) mutated and malformed configs ---------------------------------------------------------

ODD_STRINGS = st.one_of(
    st.text(max_size=30),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=30),
    st.sampled_from(
        [
            "",
            " ",
            "\n",
            "\x00",
            "é",
            "\uff4d\uff4f\uff44\uff45\uff4c",
            "\u202e",
            "🧠",
            "a" * 70,
            "-1",
            "1e309",
        ]
    ),
    st.builds(lambda: "x" * 100_000),
)
HUGE_NUMBERS = st.sampled_from([-1, -(2**63), 2**63, 10**30, 1.5, float("inf"), float("nan")])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), HUGE_NUMBERS, ODD_STRINGS)
JUNK = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(ODD_STRINGS, inner, max_size=3),
        st.builds(lambda: {"secure": "v1:abc"}),  # a fresh dict: mutations must not leak
    ),
    max_leaves=6,
)


def _paths(node: Any, path: tuple = ()) -> list[tuple]:
    """Every path into a config tree (map keys and list indexes)."""
    found = [path]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*path, index))
    return found


def _raw_of(source: str) -> dict[str, Any]:
    path = Path(source) if source.endswith(".yaml") else PROJECT_DIR / f"Pulumi.{source}.yaml"
    return raw_project_config(yaml.safe_load(path.read_text(encoding="utf-8")))


RAW_SOURCES = {source: _raw_of(source) for source in STACK_SOURCES}


@st.composite
def mutated_config(draw) -> dict[str, Any]:
    raw = copy.deepcopy(RAW_SOURCES[draw(st.sampled_from(sorted(RAW_SOURCES)))])
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(raw)
        path = draw(st.sampled_from(paths))
        action = draw(st.sampled_from(["replace", "delete", "add", "retype", "rekey"]))
        if not path:
            if action == "replace":
                raw = draw(st.dictionaries(ODD_STRINGS, JUNK, max_size=3))
            continue
        parent: Any = raw
        for part in path[:-1]:
            parent = parent[part]
        key = path[-1]
        if action == "replace":
            parent[key] = draw(JUNK)
        elif action == "delete":
            del parent[key]
        elif action == "add" and isinstance(parent[key], dict):
            parent[key][draw(ODD_STRINGS)] = draw(JUNK)
        elif action == "retype":
            value = parent[key]
            parent[key] = json.dumps(value) if not isinstance(value, str) else [value]
        elif action == "rekey" and isinstance(parent, dict):
            parent[draw(ODD_STRINGS)] = parent.pop(key)
    return raw


def _parse_and_build(raw: dict[str, Any]) -> None:
    try:
        config = parse_config(raw, "fuzz")
    except ConfigError as error:
        assert_clean_refusal(error)
        event("refused with a ConfigError")
        return
    event("accepted and rendered")
    objects = build_plan(config).objects()
    check(config, objects)
    to_yaml(render_objects(config, set()))


@settings(max_examples=examples(300), **SETTINGS)
@given(raw=mutated_config())
def test_mutated_configs_raise_nothing_but_config_error(raw):
    _parse_and_build(raw)


@settings(max_examples=examples(150), **SETTINGS)
@given(raw=mutated_config())
def test_config_the_product_accepts_is_accepted_by_the_schema(raw, schema_validator):
    """The editor schema is never stricter than ml-mesh itself."""
    try:
        parse_config(raw, "fuzz")
    except ConfigError:
        event("refused by ml-mesh")
        return
    event("accepted by ml-mesh, so checked against the schema")
    document = stack_document(raw)
    assert [e.message for e in schema_validator.iter_errors(document)] == []


@pytest.fixture(scope="module")
def stack_dir():
    with tempfile.TemporaryDirectory() as directory:
        yield Path(directory)


@settings(max_examples=examples(100), **SETTINGS)
@given(raw=mutated_config(), text_edit=st.one_of(st.none(), st.tuples(st.integers(0), ODD_STRINGS)))
def test_malformed_stack_files_raise_nothing_but_config_error(raw, text_edit, stack_dir):
    text = yaml.safe_dump(stack_document(raw), allow_unicode=True)
    if text_edit is not None:  # break the YAML itself at some position
        position, insert = text_edit
        position %= len(text) + 1
        text = text[:position] + insert + text[position:]
    path = stack_dir / "Pulumi.fuzz.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        stack = load_stack(str(path))
    except ConfigError as error:
        assert_clean_refusal(error)
        event("refused with a ConfigError")
        return
    event("loaded and rendered")
    to_yaml(render_objects(stack.config, stack.secrets))


@settings(max_examples=examples(40), **SETTINGS)
@given(raw=mutated_config())
def test_the_program_turns_any_bad_config_into_one_run_error(raw):
    if any(not isinstance(key, str) or not key or ":" in key for key in raw):
        event("skipped: not expressible as Pulumi config keys")
        return
    # The engine hands the program every value as text (structures as JSON), so what the
    # program reads is the decoded text: a string spelling JSON reads as that structure, and a
    # null as the string "null" (the program cannot tell them apart).
    as_read = {
        key.removeprefix("ml-mesh:"): engine_value(key.removeprefix("ml-mesh:"), text)
        for key, text in stack_config_text(raw).items()
    }
    try:
        config = parse_config(as_read, "fuzz")
    except ConfigError:
        config = None
    # A valid config can still be refused by a mesh check error (e.g. MESH0010: requests above
    # limits once the server preset is merged, which the API server would refuse): one line,
    # naming the stack and the first error, and nothing registered either.
    failing = errors(check(config, build_plan(config).objects())) if config is not None else []
    run, error = try_program(raw, stack="fuzz")
    if config is not None and failing:
        event("refused by a mesh check")
        assert isinstance(error, pulumi.RunError), repr(error)
        assert str(error).startswith("ml-mesh: stack 'fuzz' fails mesh checks: "), str(error)
        assert len(str(error).splitlines()) == 1 and run.resources == []
        return
    accepted = config is not None
    event("deployed" if accepted else "refused with a RunError")
    if accepted:
        assert error is None, error
    else:
        assert isinstance(error, pulumi.RunError), repr(error)
        lines = str(error).splitlines()  # every problem, each one line naming the stack
        assert lines and all(line.startswith(CONFIG_ERROR_PREFIX) for line in lines), lines
        assert run.resources == []


def test_odd_keys_are_quoted_as_pulumi_paths_so_the_message_stays_one_line(dev):
    """Found by the mutation property: a key holding a newline split the message in two."""
    raw = copy.deepcopy(dev)
    raw["gateway"]["selector"] = {"istio": "ingressgateway", "app.kubernetes.io/name": 7}
    with pytest.raises(ConfigError) as refused:
        parse_config(raw, "fuzz")
    assert 'gateway.selector["app.kubernetes.io/name"]: ' in str(refused.value)
    raw = copy.deepcopy(dev)
    raw["models"]["sentiment"]["resources"] = {"requests": {"\n": "2"}}
    with pytest.raises(ConfigError) as refused:
        parse_config(raw, "fuzz")
    assert_clean_refusal(refused.value)
    assert 'models.sentiment.resources.requests["\\n"]: unknown setting' in str(refused.value)
