"""`pip install .` gives users what they expect: a wheel built by maturin with the compiled core, the
`zerotrustml` command, the runtime dependencies only, the service and the test tools in extras, and the
dashboard inside when it was built."""

from __future__ import annotations

import email
import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_holds_the_core_the_command_and_only_runtime_dependencies(tmp_path: Path) -> None:
    build = subprocess.run(
        [sys.executable, "-m", "maturin", "build", "--release", "--quiet", "--out", str(tmp_path / "dist")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("zerotrustml-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        meta = email.message_from_bytes(zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))))
        entry_points = zf.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert any(n.startswith("zerotrustml/_core") and n.endswith(".so") for n in names)
    assert "zerotrustml/service/app.py" in names and "zerotrustml/py.typed" in names
    if (ROOT / "python/zerotrustml/service/static/index.html").exists():
        assert "zerotrustml/service/static/index.html" in names
    assert "zerotrustml=zerotrustml.cli:main" in entry_points.replace(" ", "")

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requires = meta.get_all("Requires-Dist") or []
    plain = {r for r in requires if "extra ==" not in r}
    assert plain == {r.replace(" ", "") for r in project["dependencies"]} or plain == set(project["dependencies"])
    for extra in ("service", "test", "torch", "holochain", "flower", "ray"):
        assert extra in (meta.get_all("Provides-Extra") or [])
    assert not any(tool in " ".join(plain) for tool in ("pytest", "mypy", "ruff", "fastapi", "torch"))

    # Installed on its own (dependencies from this environment), the command runs a small simulation.
    site = tmp_path / "site"
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert pip.returncode == 0, pip.stderr
    env = {**os.environ, "PYTHONPATH": str(site)}
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            "import zerotrustml; from zerotrustml import cli; print(zerotrustml.__file__, flush=True); cli.main()",
            "run",
            "--dataset",
            "synthetic",
            "--nodes",
            "6",
            "--rounds",
            "2",
            "--quiet",
            "--data-dir",
            str(tmp_path / "r"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[0].startswith(str(site))  # the wheel's package, not the repository's
