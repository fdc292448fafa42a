"""`python -m mesh schema`: a JSON Schema that editors use to validate whole stack files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from mesh.config import ConfigError, parse_config
from mesh.schema import stack_file_schema
from tests.conftest import EXAMPLES, PROJECT_DIR, STACKS, run_mesh

STACK_FILES = [PROJECT_DIR / f"Pulumi.{stack}.yaml" for stack in STACKS] + list(EXAMPLES)


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = stack_file_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _document(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _errors(validator, document: dict[str, Any]) -> list[str]:
    return [e.message for e in validator.iter_errors(document)]


def test_schema_command_prints_the_schema_as_json():
    result = run_mesh("schema")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == stack_file_schema()


@pytest.mark.parametrize("path", STACK_FILES, ids=lambda p: p.name)
def test_every_committed_stack_file_and_example_validates(validator, path):
    assert _errors(validator, _document(path)) == []


def test_check_jsonschema_validates_stack_files_with_it(tmp_path):
    """What a CI job or pre-commit hook would run, using the CLI from requirements-dev."""
    schema = tmp_path / "ml-mesh.schema.json"
    schema.write_text(json.dumps(stack_file_schema()))
    bad = tmp_path / "Pulumi.bad.yaml"
    bad.write_text(
        (PROJECT_DIR / "Pulumi.dev.yaml").read_text().replace("weight: 10", "weight: 101")
    )
    command = [sys.executable, "-m", "check_jsonschema", "--schemafile", str(schema)]
    good = subprocess.run([*command, *map(str, STACK_FILES)], capture_output=True, text=True)
    assert good.returncode == 0, good.stdout + good.stderr
    failed = subprocess.run([*command, str(bad)], capture_output=True, text=True)
    assert failed.returncode == 1 and "101" in failed.stdout


def _dev_with(edit) -> dict[str, Any]:
    document = _document(PROJECT_DIR / "Pulumi.dev.yaml")
    edit(document["config"])
    return document


def _sentiment(config: dict[str, Any]) -> dict[str, Any]:
    return config["ml-mesh:models"]["sentiment"]


REFUSED = [
    ("misspelt ml-mesh key", lambda c: c.update({"ml-mesh:modles": {}}), "ml-mesh:modles"),
    ("weight above 100", lambda c: _sentiment(c)["canary"].update(weight=150), "150"),
    ("weight as text", lambda c: _sentiment(c)["canary"].update(weight="10"), "'10'"),
    ("unknown server", lambda c: _sentiment(c).update(server="pytorch"), "pytorch"),
    ("typo in a model", lambda c: _sentiment(c).update(stabel="v1"), "stabel"),
    ("required key missing", lambda c: c.pop("ml-mesh:storage"), "ml-mesh:storage"),
    (
        "secret where secrets are refused",
        lambda c: c["ml-mesh:storage"].update(bucket={"secure": "v1:abc"}),
        "secure",
    ),
    ("malformed secret", lambda c: _sentiment(c).update(roleArn={"secure": 1}), "1"),
]


@pytest.mark.parametrize("edit", [r[1] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_schema_refuses_what_the_product_refuses(validator, edit):
    assert _errors(validator, _dev_with(edit)) != []


ACCEPTED = [
    ("other providers' keys", lambda c: c.update({"kubernetes:context": "dev", "aws:region": "x"})),
    ("a key without namespace", lambda c: c.update({"protected": True})),
    ("a secret role ARN", lambda c: _sentiment(c).update(roleArn={"secure": "v1:abc"})),
    (
        "a secret env value of a custom server",
        lambda c: _sentiment(c).update(
            server="custom", custom={"env": {"TOKEN": {"secure": "v1:abc"}, "MODE": "fast"}}
        ),
    ),
]


@pytest.mark.parametrize("edit", [a[1] for a in ACCEPTED], ids=[a[0] for a in ACCEPTED])
def test_schema_accepts_what_pulumi_and_ml_mesh_accept(validator, edit):
    assert _errors(validator, _dev_with(edit)) == []


def test_pulumi_top_level_keys_are_allowed_and_typos_are_not(validator):
    document = _document(PROJECT_DIR / "Pulumi.prod.yaml")
    document |= {"encryptionsalt": "v1:c2FsdA==:v1:abc", "secretsprovider": "passphrase"}
    assert _errors(validator, document) == []
    assert _errors(validator, {**document, "configs": {}}) != []


def test_descriptions_and_defaults_reach_the_editor():
    models = stack_file_schema()["$defs"]["Model"]["properties"]
    assert "IAM role" in models["roleArn"]["description"]
    assert models["diskSize"]["default"] == "10Gi"


@pytest.mark.parametrize(
    ("value", "accepted"),
    [(True, True), ("true", True), ("False", True), ("yes", False), (1, False), ("TRUE", False)],
)
def test_schema_and_product_agree_on_booleans_as_pulumi_reads_them(validator, value, accepted):
    """Pulumi may hand a boolean over as text ("true"); its get_bool accepts exactly
    true/True/false/False, and so do ml-mesh and its schema."""
    # istio.nativeSidecars: a boolean whose value no other rule depends on (protected would
    # also demand TLS of the dev stack)
    document = _dev_with(lambda c: c["ml-mesh:istio"].update({"nativeSidecars": value}))
    assert (_errors(validator, document) == []) is accepted
    raw = {k.removeprefix("ml-mesh:"): v for k, v in document["config"].items()}
    try:
        parse_config(raw, "dev")
        product_accepts = True
    except ConfigError:
        product_accepts = False
    assert product_accepts is accepted
