"""The GitHub workflow files parse, and every `mbs ...` command they run exists with flags that parse."""

import re
import shlex
from pathlib import Path

import pytest
import yaml

from mbs_layers.cli import build_parser
from mbs_layers.sweep.presets import PACKAGED

WORKFLOWS = Path(__file__).resolve().parents[2] / ".github" / "workflows"
MBS = re.compile(r"(?:^|\s)(?:\S*/)?mbs\s")


def load(name: str) -> dict:
    doc = yaml.safe_load((WORKFLOWS / name).read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as true
    return doc


def steps(doc: dict):
    for job in doc["jobs"].values():
        yield from job["steps"]


def expand(text: str, env: dict) -> str:
    """``text`` with GitHub expressions replaced by their ``|| 'default'`` (else ``EXPR``) and shell
    variables by their workflow ``env`` value (else ``VALUE``), as the runner would see them."""
    text = re.sub(r"\$\{\{(?:[^}]*\|\|\s*'([^']*)')?[^}]*\}\}", lambda m: m.group(1) or "EXPR", text)
    return re.sub(r"\$\{(\w+)[^}]*\}|\$(\w+)", lambda m: env.get(m.group(1) or m.group(2), "VALUE"), text)


def mbs_commands(doc: dict) -> list[list[str]]:
    """The argument lists of every mbs call in the run steps, with variables filled in."""
    env = {k: str(v) for scope in (doc, *doc["jobs"].values()) for k, v in scope.get("env", {}).items()}
    env = {k: expand(v, {}) for k, v in env.items()}
    calls = []
    for step in steps(doc):
        for line in expand(step.get("run", ""), env).replace("\\\n", " ").splitlines():
            if MBS.search(" " + line):
                words = shlex.split(line)
                at = next(i for i, w in enumerate(words) if w == "mbs" or w.endswith("/mbs"))
                calls.append(words[at + 1 :])
    return calls


@pytest.mark.parametrize("name", ["ci.yml", "gpu-bench.yml"])
def test_workflow_parses_and_its_mbs_commands_parse(name):
    doc = load(name)
    assert doc["on"] and doc["jobs"]
    parser = build_parser()
    for argv in mbs_commands(doc):
        args = parser.parse_args(argv)  # argparse exits (SystemExit) on an unknown command or flag
        assert callable(args._main)


def test_ci_workflow_runs_the_ci_script():
    assert any(step.get("run", "").strip() == "bash .ci/run" for step in steps(load("ci.yml")))


def test_gpu_workflow_runs_on_the_gpu_runner_and_keeps_the_history():
    doc = load("gpu-bench.yml")
    (job,) = doc["jobs"].values()
    assert set(job["runs-on"]) == {"self-hosted", "gpu"}
    commands = [argv[:2] for argv in mbs_commands(doc)]
    assert commands == [
        ["sweep", "--preset"],
        ["history", "add"],
        ["history", "check"],
        ["report", "results/sweep.jsonl"],
    ]
    uses = [step.get("uses", "").split("@")[0] for step in steps(doc)]
    assert {"actions/cache/restore", "actions/cache/save", "actions/upload-artifact"} <= set(uses)
    assert set(doc["on"]["workflow_dispatch"]["inputs"]["preset"]["options"]) <= set(PACKAGED)
    check = next(step for step in steps(doc) if step.get("id") == "check")
    assert "if" not in check  # the check's exit status fails the job
