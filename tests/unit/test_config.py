"""params.yaml is checked once, by a typed schema, and every mistake a user can make is reported as ONE line that
names the file and the dotted key path (in-process through `parse_params`, and through the `mllmcl` command and
the DVC stages, which exit 2 without a traceback). The shipped params.yaml is valid and equals the schema's
defaults, so the defaults have one source."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mllmcl.config import ConfigError, Params, load_params, parse_params
from mllmcl.config.schema import Section

REPO = Path(__file__).resolve().parents[2]
SHIPPED = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
DELETE = object()


def changed(key: str, value) -> dict:
    """The shipped params with one dotted key set (or removed with DELETE); parents must exist."""
    data = copy.deepcopy(SHIPPED)
    *parents, last = key.split(".")
    node = data
    for part in parents:
        node = node[part]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return data


# (id, dotted key changed, new value, what the message must contain: the key path first, then other words)
BAD = [
    ("lr-percent", "expert.lr", "3%", ["expert.lr", "'3%'"]),
    ("batch-size-zero", "expert.batch_size", 0, ["expert.batch_size", ">= 1"]),
    ("min-rows-not-mapping", "validate.min_rows", 20, ["validate.min_rows", "mapping"]),
    ("target-modules-string", "expert.target_modules", "q_proj", ["expert.target_modules", "list"]),
    ("target-module-bad-name", "expert.target_modules", ["q proj"], ["expert.target_modules[0]", "module name"]),
    (
        "misspelt-key",
        "gate.max_prior_dorp",
        0.03,
        ["gate.max_prior_dorp", "unknown key", "did you mean 'max_prior_drop'"],
    ),
    ("misspelt-nested-key", "validate.min_rows.trian", 5, ["validate.min_rows.trian", "unknown key", "'train'"]),
    ("prior-drop-above-one", "gate.max_prior_drop", 2.0, ["gate.max_prior_drop", "between 0 and 1"]),
    ("negative-steps", "expert.steps", -5, ["expert.steps", "-5"]),
    ("reserved-task", "tasks", ["rs", "base"], ["tasks[1]", "reserved"]),
    ("task-with-newline", "tasks", ["rs", "evil\n"], ["tasks[1]", "not a task name"]),
    ("task-twice", "tasks", ["rs", "med", "rs"], ["tasks[2]", "twice"]),
    ("tasks-not-a-list", "tasks", "rs", ["tasks", "list"]),
    ("base-suite-is-a-task", "router.base_suite", "rs", ["router.base_suite", "'rs'"]),
    ("threads-zero", "compute.threads", 0, ["compute.threads", "'auto'"]),
    ("threads-word", "compute.threads", "many", ["compute.threads", "'many'"]),
    ("patch-not-dividing", "base.tiny.vision.patch_size", 24, ["base.tiny.vision.patch_size", "does not divide"]),
    ("heads-not-dividing", "base.tiny.text.heads", 5, ["base.tiny.text.heads", "does not divide"]),
    ("build-none-without-model", "base.build", "none", ["base.name_or_path", "required"]),
    ("remote-http", "storage.dvc_remote", "http://x", ["storage.dvc_remote", "'http://x'"]),
    ("endpoint-not-http", "storage.s3.endpoint_url", "ftp://x", ["storage.s3.endpoint_url", "URL"]),
    ("cron-word", "schedule.cron", "daily", ["schedule.cron", "cron"]),
    ("image-size-mismatch", "data.image_size", 32, ["data.image_size", "base.tiny.image_size"]),
    ("min-confidence-null", "routing.min_confidence", None, ["routing.min_confidence", "null"]),
    ("approval-not-bool", "gate.require_approval", "maybe", ["gate.require_approval", "true or false"]),
    ("dropout-one", "expert.lora_dropout", 1.0, ["expert.lora_dropout", "< 1"]),
    ("tasks-removed", "tasks", DELETE, ["tasks", "missing"]),
    ("section-null", "expert", None, ["expert", "mapping"]),
    ("unknown-section", "experts", {"lr": 0.1}, ["experts", "unknown key", "'expert'"]),
]
BAD_IDS = [row[0] for row in BAD]


def test_the_table_covers_enough_mistakes():
    assert len(BAD) >= 18
    assert len(set(BAD_IDS)) == len(BAD_IDS)


@pytest.mark.parametrize("key, value, needles", [row[1:] for row in BAD], ids=BAD_IDS)
def test_a_bad_value_is_one_line_naming_the_key(key, value, needles):
    with pytest.raises(ConfigError) as caught:
        parse_params(changed(key, value))
    message = str(caught.value)
    assert "\n" not in message and "\r" not in message, message
    assert message.startswith("params.yaml: "), message
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"


def test_a_misspelt_key_never_falls_back_to_its_default():
    """The typo is refused, so the user cannot believe 0.5 is in force while the default 0.03 is used."""
    with pytest.raises(ConfigError, match=r"gate\.max_prior_dorp: unknown key"):
        parse_params(changed("gate.max_prior_dorp", 0.5))


def test_the_shipped_params_load():
    params = load_params(REPO / "params.yaml")
    assert params.tasks == SHIPPED["tasks"]
    assert params.gate.max_prior_drop == SHIPPED["gate"]["max_prior_drop"]
    assert params.validate_.min_rows.train == SHIPPED["validate"]["min_rows"]["train"]
    assert params.expert.target_modules == SHIPPED["expert"]["target_modules"]


def test_yaml_scientific_notation_is_a_number(tmp_path):
    # PyYAML (YAML 1.1) reads 1e-3 without a dot as a string: the schema must still take it as 0.001
    assert yaml.safe_load("lr: 1e-3")["lr"] == "1e-3"
    assert parse_params(changed("expert.lr", "1e-3")).expert.lr == pytest.approx(0.001)

    text = (REPO / "params.yaml").read_text(encoding="utf-8").replace("lr: 0.001", "lr: 1e-3")
    assert "lr: 1e-3" in text
    (tmp_path / "params.yaml").write_text(text, encoding="utf-8")
    loaded = load_params(tmp_path / "params.yaml")
    assert loaded.router.lr == pytest.approx(0.001) and loaded.expert.lr == pytest.approx(0.001)


@pytest.mark.parametrize(
    "text, line, key",
    [
        ("tasks: [rs]\ntasks: [med]\n", 2, "tasks"),
        ("tasks: [rs]\ngate:\n  max_prior_drop: 0.03\n  max_prior_drop: 0.5\n", 4, "max_prior_drop"),
    ],
    ids=["top-level", "nested"],
)
def test_a_duplicate_key_is_refused_naming_its_line(tmp_path, text, line, key):
    path = tmp_path / "params.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_params(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: "), message
    assert f"line {line}" in message and repr(key) in message and "twice" in message


def test_a_missing_file_names_the_file(tmp_path):
    path = tmp_path / "nowhere" / "params.yaml"
    with pytest.raises(ConfigError) as caught:
        load_params(path)
    assert str(caught.value).startswith(f"{path}: ") and "not found" in str(caught.value)


def test_invalid_yaml_names_the_file_and_line(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("tasks: [rs\ngate: {\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_params(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ") and "not valid YAML" in message and "line " in message


@pytest.mark.parametrize("text", ["", "- rs\n- med\n", "just a string\n"], ids=["empty", "a-list", "a-string"])
def test_a_file_that_is_not_a_mapping_is_refused(tmp_path, text):
    path = tmp_path / "params.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_params(path)


def _diff(a, b, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            where = f"{prefix}.{key}" if prefix else key
            if key not in a or key not in b:
                out.append(f"{where}: only in {'the defaults' if key in a else 'params.yaml'}")
            else:
                out.extend(_diff(a[key], b[key], where))
        return out
    return [] if a == b else [f"{prefix}: schema default {a!r}, params.yaml {b!r}"]


def test_the_shipped_params_equal_the_schema_defaults():
    defaults = Params(tasks=SHIPPED["tasks"]).model_dump(mode="json", by_alias=True)
    shipped = parse_params(copy.deepcopy(SHIPPED)).model_dump(mode="json", by_alias=True)
    differences = _diff(defaults, shipped)
    assert not differences, "params.yaml and the schema defaults differ:\n" + "\n".join(differences)


def test_params_are_immutable_once_loaded():
    params = parse_params(copy.deepcopy(SHIPPED))
    with pytest.raises(Exception, match="frozen"):
        params.gate.max_prior_drop = 0.5  # type: ignore[misc]


# --- through the command line and the stages -----------------------------------------------------------------
CLI_ROWS = [row for row in BAD if row[0] not in {"target-module-bad-name", "approval-not-bool", "dropout-one"}]


def _env() -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def _run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=60, check=False
    )


def _write(root: Path, data: dict) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].strip(), proc.stderr
    return lines[0]


def test_the_cli_table_is_large_enough():
    assert len(CLI_ROWS) >= 15


@pytest.mark.parametrize("key, value, needles", [row[1:] for row in CLI_ROWS], ids=[row[0] for row in CLI_ROWS])
def test_params_check_exits_2_with_one_line_naming_the_key(tmp_path, key, value, needles):
    _write(tmp_path, changed(key, value))
    line = _one_error_line(_run(["-m", "mllmcl", "params", "check", "--root", str(tmp_path)]))
    assert line.startswith(f"error: {tmp_path / 'params.yaml'}: "), line
    assert needles[0] in line, line


def test_params_check_accepts_the_shipped_file(tmp_path):
    _write(tmp_path, copy.deepcopy(SHIPPED))
    proc = _run(["-m", "mllmcl", "params", "check", "--root", str(tmp_path)])
    assert proc.returncode == 0, proc.stderr
    assert "valid" in proc.stdout and ", ".join(SHIPPED["tasks"]) in proc.stdout


@pytest.mark.parametrize(
    "stage, extra",
    [
        ("ingest", ["--task", "rs"]),
        ("validate", ["--task", "rs"]),
        ("base", []),
        ("train_expert", ["--task", "rs"]),
        ("train_router", []),
        ("evaluate", []),
        ("gate", []),
    ],
)
def test_a_stage_exits_2_with_one_line_on_bad_params(tmp_path, stage, extra):
    _write(tmp_path, changed("gate.max_prior_drop", 2.0))
    line = _one_error_line(_run(["-m", f"stages.{stage}", "--root", str(tmp_path), *extra]))
    assert "gate.max_prior_drop" in line and "2.0" in line, line


# --- `mllmcl params show` ------------------------------------------------------------------------------------
def _leaves(model: type[Section], prefix: str = ""):
    """(dotted key, description) of every documented leaf field of the schema."""
    for name, info in model.model_fields.items():
        key = info.alias or name
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, Section):
            yield from _leaves(annotation, f"{prefix}{key}.")
        elif info.description:
            yield f"{prefix}{key}", info.description


def test_params_show_prints_every_section_and_description(tmp_path, capsys):
    from mllmcl.cli.main import main

    _write(tmp_path, changed("gate.max_prior_drop", 0.07))
    assert main(["params", "show", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    top = {line.split(":", 1)[0] for line in lines if line and not line.startswith(" ")}
    assert top == {info.alias or name for name, info in Params.model_fields.items()}
    # the value in force (from the file, not the default) with its description
    assert any(
        line.strip().startswith("max_prior_drop: 0.07")
        and line.endswith("# most accuracy a prior task may lose vs production")
        for line in lines
    ), out
    leaves = list(_leaves(Params))
    assert len(leaves) > 50
    missing = [key for key, description in leaves if f"{key.rsplit('.', 1)[-1]}: " not in out or description not in out]
    assert not missing, f"not shown with their description: {missing}"


@pytest.mark.parametrize("key", ["gate.max_prior_drop", "expert.steps", "expert.lr"])
def test_a_boolean_is_not_a_number(key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        parse_params(changed(key, True))


def test_an_empty_registry_uri_says_it_must_not_be_empty():
    with pytest.raises(ConfigError) as caught:
        parse_params(changed("registry.uri", ""))
    message = str(caught.value)
    assert message.startswith("params.yaml: registry.uri: ")
    assert "is not a string" not in message
