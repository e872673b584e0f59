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
    assert set(project["optional-dependencies"]["ray"]) <= test_extra  # the Ray executor's tests run with it
    assert not test_extra & _installed_by("$(VENV)/.deps")  # `make run` installs no test tool
    assert _installed_by("$(VENV)/.deps-torch") == set(project["optional-dependencies"]["torch"])
    assert _installed_by("$(VENV)/.deps-service") == set(project["optional-dependencies"]["service"])
    service = _installed_by("$(VENV)/.deps-service") - _installed_by("$(VENV)/.deps")  # websockets is in both
    assert service and not service & test_extra
    # `make run` reaches .deps through `build` only, never the test or torch extras.
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^run: build ##", makefile, re.MULTILINE)
    assert re.search(r"^build: \$\(VENV\)/\.deps ##", makefile, re.MULTILINE)


def test_the_container_and_the_nix_shell_keep_their_promises() -> None:
    # Neither Docker nor Nix runs on the machines this project is built on; what can be read is checked here.
    dockerfile = (ROOT / "Dockerfile").read_text()
    steps = [line.split()[0] for line in dockerfile.splitlines() if line and not line.startswith((" ", "#"))]
    assert "USER" in steps and steps.index("USER") < steps.index("CMD")
    assert re.search(r"^USER (?!root)\w+", dockerfile, re.M)
    # Everything `make test` installs is installed at build time (the stamps make skips), before the sources.
    assert dockerfile.index("make .venv/.deps-torch") < dockerfile.index("COPY --chown=ztml:ztml . .")
    assert "cd tryorama && npm ci" in dockerfile and "cd web && npm ci" in dockerfile
    assert "make build dashboard happ" in dockerfile
    assert "node:20" not in dockerfile
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {"target/", ".venv/", "tryorama/node_modules/", "web/node_modules/", ".git"} <= set(ignored)
    flake = (ROOT / "flake.nix").read_text()
    assert re.search(r'holonix\.url = "github:holochain/holonix/[0-9a-f]{40}"', flake)  # pinned, not floating
    assert "nodejs_20" not in flake and "LD_LIBRARY_PATH" in flake
    # Nothing the project ships points outside the repository.
    for path in [*ROOT.glob("docs/*.md"), ROOT / "README.md", ROOT / "Dockerfile", *ROOT.glob("scripts/*")]:
        text = path.read_text()
        assert "../shared" not in text and "TOOLCHAIN.md" not in text, path
