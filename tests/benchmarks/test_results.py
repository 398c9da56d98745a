"""The benchmarks' one results document (``tests/_harness/results.py``): its keys, the same machine description
everywhere, an atomic write under the benchmark's name, the markdown tables; and every benchmark writes through it
and still runs as ``python benchmarks/<name>.py``."""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from tests._harness import results
from tests._harness.results import markdown_table, read_figures, results_path, write_results
from tuneahead_ray._private import atomic

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = sorted(path for path in (ROOT / "benchmarks").glob("*.py") if path.name != "__init__.py")
MACHINE_KEYS = {"platform", "architecture", "cpu", "cores", "memory_gib", "gpus", "python", "versions"}


def test_the_document_has_the_schema_keys_and_the_figures_as_given(tmp_path: Path) -> None:
    load = argparse.Namespace(corpus=Path("corpus/corpus.parquet"), seeds=2, strategies=["random"])
    figures = {"rmse": np.float64(1.5), "go": np.int64(3), "curve": np.array([1.0, 2.0]), "coverage": math.nan}
    path = write_results("example", figures, load, tmp_path / "example.json")

    document = json.loads(path.read_text(encoding="utf-8"))
    assert list(document) == ["benchmark", "machine", "date", "load", "figures"]
    assert document["benchmark"] == "example"
    assert set(document["machine"]) == MACHINE_KEYS
    assert set(document["machine"]["versions"]) == {"tuneahead-ray", "torch", "transformers", "ray", "lightgbm"}
    assert document["machine"]["cores"] >= 1 and isinstance(document["machine"]["gpus"], list)
    written = datetime.fromisoformat(document["date"])
    assert written.utcoffset() == timedelta(0)
    assert abs(datetime.now(timezone.utc) - written) < timedelta(minutes=5)
    assert document["load"] == {"corpus": "corpus/corpus.parquet", "seeds": 2, "strategies": ["random"]}
    assert document["figures"]["rmse"] == 1.5 and document["figures"]["go"] == 3
    assert document["figures"]["curve"] == [1.0, 2.0] and math.isnan(document["figures"]["coverage"])
    assert read_figures(path).keys() == figures.keys() and read_figures(path)["rmse"] == 1.5


def test_the_machine_names_no_host() -> None:
    import socket

    host = socket.gethostname()
    assert len(host) < 4 or host not in json.dumps(results.machine())


def test_the_default_path_is_the_benchmarks_results_folder() -> None:
    assert results_path("accuracy") == ROOT / "benchmarks" / "results" / "accuracy.json"


def test_a_results_file_from_before_the_schema_is_all_figures(tmp_path: Path) -> None:
    legacy = tmp_path / "noise_floor.json"
    legacy.write_text(json.dumps({"seed_std_pp": 1.2, "machine": "x86_64"}), encoding="utf-8")
    assert read_figures(legacy) == {"seed_std_pp": 1.2, "machine": "x86_64"}


def test_a_failed_write_leaves_the_previous_file_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_results("example", {"run": 1}, {}, tmp_path / "example.json")
    before = path.read_bytes()

    def torn(_fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "fsync", torn)
    with pytest.raises(OSError, match="disk full"):
        write_results("example", {"run": 2}, {}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["example.json"]  # no temp file left beside it


def test_markdown_table_pads_columns_in_first_seen_order() -> None:
    rows = [{"model": "TuneAhead", "RMSE": "1.20"}, {"model": "early stop", "RMSE": None, "note": "a|b"}]
    assert markdown_table(rows, right=["RMSE"]) == (
        "| model      | RMSE | note |\n"
        "| ---------- | ---: | ---- |\n"
        "| TuneAhead  | 1.20 | -    |\n"
        "| early stop |    - | a\\|b |"
    )
    assert markdown_table(iter(rows)) == markdown_table(rows)  # any iterable of rows
    assert markdown_table([]) == ""


def test_the_writer_imports_no_heavy_library() -> None:
    """benchmarks/gpu_probe.py runs where Ray, LightGBM and others are absent: the writer must not need them."""
    code = (
        "import sys; import tests._harness.results; "
        "print(sorted(m for m in ('ray', 'lightgbm', 'shap', 'sklearn', 'torch') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert loaded.stdout.strip() == "[]"


@pytest.mark.parametrize("script", BENCHMARKS, ids=lambda path: path.stem)
def test_each_benchmark_writes_its_own_name_through_the_writer(script: Path) -> None:
    source = script.read_text(encoding="utf-8")
    assert re.findall(r'write_results\(\s*"(\w+)"', source) == [script.stem], "one write_results(<its name>, ...)"
    for own in ("platform.", "RESULTS", ".write_text(json"):
        assert own not in source, f"{script.name} still has its own {own!r}"


#: Each script's ``--help`` as ``python benchmarks/<name>.py --help`` runs it (``__main__``, its own directory first on
#: the path), all in one interpreter so the suite pays the package's import once instead of once per benchmark.
_EVERY_HELP = """
import os, runpy, sys
for script in sys.argv[1:]:
    sys.argv, sys.path[0] = [script, "--help"], os.path.dirname(script)
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as done:
        print(f"\\n{os.path.basename(script)} exit {done.code}", flush=True)
    else:
        print(f"\\n{os.path.basename(script)} did not exit", flush=True)
"""


@pytest.mark.slow
def test_each_benchmark_runs_as_a_script_from_anywhere(tmp_path: Path) -> None:
    """``python benchmarks/<name>.py`` (the form the docs use) finds tests._harness from any working directory."""
    shown = subprocess.run(
        [sys.executable, "-c", _EVERY_HELP, *map(str, BENCHMARKS)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert shown.returncode == 0, shown.stderr[-3000:]
    exits = re.findall(r"^(\w+)\.py (exit \S+|did not exit)$", shown.stdout, re.M)
    assert exits == [(script.stem, "exit 0") for script in BENCHMARKS], shown.stderr[-3000:]
    assert shown.stdout.count("usage: ") == len(BENCHMARKS)
