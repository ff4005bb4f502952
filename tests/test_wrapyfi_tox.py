"""Issue 20 A.9: tox.ini runs what `make test` and `make docs` run, installing with constraints.txt."""

import configparser
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _tox() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(ROOT / "tox.ini")
    return parser


def _recipe(target: str) -> list[str]:
    """The commands of a Makefile target, with $(BIN)/ dropped."""
    lines = (ROOT / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{target}:"))
    recipe = []
    for line in lines[start + 1:]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip().replace("$(BIN)/", ""))
    return recipe


def _extras(stamp: str) -> set[str]:
    makefile = (ROOT / "Makefile").read_text()
    block = makefile[makefile.index(f"$(VENV)/{stamp}:"):]
    return set(re.search(r'-e "\.\[([^\]]+)\]"', block).group(1).split(","))


def test_the_test_environments_run_make_tests_command_with_its_extras_and_constraints():
    tox = _tox()
    envs = [env.strip() for env in tox["tox"]["envlist"].split(",")]
    assert envs == ["py311", "docs"]
    testenv = tox["testenv"]
    assert _recipe("test") == ["pytest"]
    assert testenv["commands"].strip() == "pytest {posargs}"
    assert {e.strip() for e in testenv["extras"].split(",")} == _extras(".test")
    assert "PIP_CONSTRAINT = {toxinidir}/constraints.txt" in testenv["set_env"]
    assert testenv["package"].strip() == "editable"


def test_the_docs_environment_builds_the_site_as_make_docs_does():
    tox = _tox()
    (build,) = [line for line in _recipe("docs") if "mkdocs" in line]
    assert build.endswith("mkdocs build --strict")
    assert tox["testenv:docs"]["commands"].strip() == "mkdocs build --strict {posargs}"
    assert {e.strip() for e in tox["testenv:docs"]["extras"].split(",")} == _extras(".docs")
    assert "NO_MKDOCS_2_WARNING = 1" in tox["testenv"]["set_env"]
