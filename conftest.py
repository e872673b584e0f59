"""Every example in README.md and docs/*.md runs as written: Sybil collects them as tests.

- ```python blocks run in one namespace per document, in order, from a scratch working directory;
- ```bash blocks run with `bash -euo pipefail` in that directory, with this interpreter's scripts first on PATH
  (so `zerotrustml` is the package under test);
- ```toml blocks are run files: `zerotrustml run --config` runs each one.

A block that needs what `make test-python` does not have (conductors, `make` itself, several shells) is marked
`<!-- skip: next -->` in the document, with a comment saying where it is exercised instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from sybil import Example, Sybil
from sybil.parsers.markdown import CodeBlockParser, PythonCodeBlockParser, SkipParser

ROOT = Path(__file__).resolve().parent
SCRIPTS = Path(sys.executable).parent


def _run(example: Example, argv: list[str]) -> str | None:
    env = dict(os.environ, PATH=f"{SCRIPTS}{os.pathsep}{os.environ.get('PATH', '')}")
    proc = subprocess.run(argv, cwd=example.namespace["cwd"], env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode == 0:
        return None
    return f"exit code {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"


def _bash(example: Example) -> str | None:
    return _run(example, ["bash", "-euo", "pipefail", "-c", str(example.parsed)])


def _run_file(example: Example) -> str | None:
    cwd = Path(example.namespace["cwd"])
    path = cwd / f"run-{example.line}.toml"
    path.write_text(str(example.parsed))
    return _run(example, ["zerotrustml", "run", "--config", str(path), "--quiet", "--data-dir", str(cwd / path.stem)])


def _setup(namespace: dict[str, Any]) -> None:
    from zerotrustml import plugins

    namespace["_plugins_before"] = {(p.kind, p.name) for p in plugins.registered()}
    namespace["cwd"] = tempfile.mkdtemp(prefix="ztml-docs-")
    namespace["_old_cwd"] = os.getcwd()
    os.chdir(namespace["cwd"])


def _teardown(namespace: dict[str, Any]) -> None:
    from zerotrustml import plugins

    for p in plugins.registered():  # a document's plug-ins are its own: the next document may use the same names
        if (p.kind, p.name) not in namespace["_plugins_before"]:
            plugins.unregister(p.kind, p.name)
    os.chdir(namespace["_old_cwd"])
    shutil.rmtree(namespace["cwd"], ignore_errors=True)


pytest_collect_file = Sybil(
    parsers=[
        PythonCodeBlockParser(),
        CodeBlockParser(language="bash", evaluator=_bash),
        CodeBlockParser(language="toml", evaluator=_run_file),
        SkipParser(),
    ],
    patterns=["README.md", "docs/*.md"],
    setup=_setup,
    teardown=_teardown,
).pytest()
