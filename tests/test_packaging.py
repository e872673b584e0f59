"""The Makefile installs what pyproject.toml declares: running gets the runtime only, tests get the test extra."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _installed_by(target: str) -> set[str]:
    """The requirement strings a Makefile target's recipe installs with pip."""
    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    m = re.search(rf"^{re.escape(target)}:.*\n((?:\t.*\n)+)", text, re.MULTILINE)
    assert m is not None, f"no recipe for {target}"
    return set(re.findall(r'"([^"]+)"', "".join(line for line in m.group(1).splitlines() if "pip install" in line)))


def test_make_run_installs_the_runtime_and_nothing_for_tests() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = set(project["dependencies"]) | set(project["optional-dependencies"]["holochain"])
    build = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"])
    assert _installed_by("$(VENV)/.deps") == runtime | build
    test_extra = set(project["optional-dependencies"]["test"])
    assert _installed_by("$(VENV)/.deps-test") == test_extra
    assert not test_extra & _installed_by("$(VENV)/.deps")  # `make run` installs no test tool
    assert _installed_by("$(VENV)/.deps-torch") == set(project["optional-dependencies"]["torch"])
    # `make run` reaches .deps through `build` only, never the test or torch extras.
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^run: build ##", makefile, re.MULTILINE)
    assert re.search(r"^build: \$\(VENV\)/\.deps ##", makefile, re.MULTILINE)
