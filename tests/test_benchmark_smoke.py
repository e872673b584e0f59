"""Smoke test: benchmarks/aggregators.py --quick runs end to end and its checks pass (not a timing test)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "aggregators.py"


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("zerotrustml_bench_aggregators", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_quick_run_writes_report_and_passes_checks(tmp_path: Path) -> None:
    bench = _load_benchmark()
    md, js = tmp_path / "BENCHMARKS.md", tmp_path / "bench.json"

    assert bench.main(["--quick", "--out", str(md), "--json", str(js)]) == 0

    text = md.read_text()
    assert text.count(bench.TABLE_HEADER) == len(bench.RULES)
    for heading in ("## Machine", "## Hardware floors", "## Targets", "all checks passed"):
        assert heading in text
    data = json.loads(js.read_text())
    assert data["checks_passed"] is True
    assert data["checks"] and all(c["ok"] for c in data["checks"] if c["required"])
    assert [(s["n"], s["d"]) for s in data["sizes"]] == list(bench.QUICK_SIZES)
    assert data["floors"]["gemm"]["gemm_flops"] > 0
    assert data["floors"]["read"]["bytes_per_s"] > 0
    for size in data["sizes"]:
        for rule in bench.RULES:
            entry = size["rules"][rule]
            assert entry["impls"]["ours"]["best_s"] > 0
            assert entry["impls"]["numpy"]["best_s"] > 0
            assert entry["ratio_to_floor"] > 0


def test_the_service_load_benchmark_runs_and_loses_nothing(tmp_path: Path) -> None:
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "service_load.py"
    spec = importlib.util.spec_from_file_location("zerotrustml_bench_service_load", script)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    md, js = tmp_path / "BENCHMARKS.md", tmp_path / "service.json"
    md.write_text(f"before\n{bench.START}\n{bench.END}\nafter\n")
    argv = ["--clients", "5", "--rounds", "2", "--dims", "16", "--out", str(md), "--json", str(js)]
    assert bench.main(argv) == 0
    data = json.loads(js.read_text())
    assert data["requests"] == data["acknowledged"] == 10 and data["lost"] == 0
    assert data["submit_p95_ms"] >= data["submit_p50_ms"] > 0 and data["floor_per_s"] > 0
    text = md.read_text()
    assert text.startswith("before\n") and text.endswith("after\n")
    assert "lost (acknowledged but not in the store" in text
