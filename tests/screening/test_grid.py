"""Grid YAML: validation errors that name the key, deterministic expansion, merged duplicates."""

from __future__ import annotations

import pytest
import yaml

from tuneahead_ray.screening._grid import GridSpec, load_grid
from tuneahead_ray.testbed import DataSpec, write_dataset
from tuneahead_ray.yaml_config import ConfigError


@pytest.fixture
def data_dir(tmp_path):
    for seed in (1, 2):
        write_dataset(DataSpec(size=20, seed=seed), tmp_path / f"d{seed}.jsonl")
    return tmp_path


def _grid(data_dir, body: str):
    path = data_dir / "grid.yaml"
    path.write_text(body, encoding="utf-8")
    return path


def test_lists_ranges_and_log_ranges_expand_to_their_product(data_dir) -> None:
    path = _grid(
        data_dir,
        "datasets: ['*.jsonl']\n"
        "hp:\n  lr: {log_range: [1.0e-4, 1.0e-2], num: 3}\n  lora_r: [4, 8]\n"
        "  warmup_ratio: {range: [0, 0.1], num: 2}\n",
    )
    grid, candidates = load_grid(path)
    assert len(candidates) == 2 * 3 * 2 * 2
    assert sorted({c.hp.lr for c in candidates}) == pytest.approx([1e-4, 1e-3, 1e-2])
    assert {c.hp.warmup_ratio for c in candidates} == {0.0, 0.1}
    assert [c.candidate_id() for c in candidates] == [c.candidate_id() for c in load_grid(path)[1]]


def test_equal_candidates_are_merged(data_dir) -> None:
    # Two spellings of the same module set and a repeated dataset are one candidate each.
    path = _grid(
        data_dir,
        "datasets: [d1.jsonl, d1.jsonl]\nhp: {target_modules: [[q_proj, v_proj], [v_proj, q_proj]], lr: 0.001}\n",
    )
    assert len(load_grid(path)[1]) == 1


def test_a_device_is_auto_cpu_or_a_cuda_device(data_dir) -> None:
    assert [
        load_grid(_grid(data_dir, f"datasets: [d1.jsonl]\ndevice: {d}\n"))[0].device for d in ("cpu", "cuda:1")
    ] == [
        "cpu",
        "cuda:1",
    ]


def test_a_reference_set_is_found_beside_the_grid_from_any_working_directory(data_dir, monkeypatch) -> None:
    monkeypatch.chdir(data_dir.parent)
    grid, _ = load_grid(_grid(data_dir, "datasets: [d1.jsonl]\nprobe: {reference_path: d2.jsonl}\n"))
    assert grid.probe.reference_path == str((data_dir / "d2.jsonl").resolve())


def test_samples_draw_a_deterministic_subset(data_dir) -> None:
    path = _grid(data_dir, "datasets: [d1.jsonl]\nhp: {lr: {log_range: [1.0e-5, 1.0e-1], num: 50}}\nsamples: 7\n")
    first, second = load_grid(path)[1], load_grid(path)[1]
    assert len(first) == 7 and [c.hp.lr for c in first] == [c.hp.lr for c in second]


@pytest.mark.parametrize(
    "body, expected",
    [
        ("datasets: [d1.jsonl]\nhp: {lr: [0.001, -1]}\n", "hp.lr"),
        ("datasets: [d1.jsonl]\nhp: {learning_rate: [0.1]}\n", "learning_rate"),
        ("datasets: [d1.jsonl]\nhp: {lr: {log_range: [0, 1], num: 3}}\n", "log_range"),
        ("datasets: [d1.jsonl]\nhp: {lora_r: [0]}\n", "hp.lora_r"),
        ("datasets: [nope*.jsonl]\n", "matches no file"),
        ("datasets: [missing.jsonl]\n", "does not exist"),
        ("datasets: []\n", "datasets"),
        ("datasets: [d1.jsonl]\nprobe: {min_steps: 50, max_steps: 10}\n", "min_steps"),
        ("datasets: [d1.jsonl]\nbogus: 1\n", "bogus"),
        ("datasets: [d1.jsonl]\ndevice: gpu\n", "device"),
        ("datasets: [d1.jsonl]\nprobe: {reference_path: nope.jsonl}\n", "probe.reference_path"),
        ("datasets: [d1.jsonl]\nprobe: {reference_path: bad.jsonl}\n", "bad.jsonl, line 2"),
        ("datasets: [d1.jsonl\n", "line"),
    ],
)
def test_bad_grids_name_the_file_and_the_key(data_dir, body: str, expected: str) -> None:
    (data_dir / "bad.jsonl").write_text('{"instruction": "a", "output": "b"}\n{"instruction": \n')
    with pytest.raises(ConfigError) as err:
        load_grid(_grid(data_dir, body))
    assert "grid.yaml" in str(err.value) and expected in str(err.value)


@pytest.mark.parametrize(
    "body, expected",
    [
        ("budget: {gpu_hours: 1, full_runs: 3}\n", "exactly one"),
        ("budget: {}\n", "exactly one"),
        ("budget: {gpu_hours: -1}\n", "budget.gpu_hours"),
        ("probe_budget: 0\n", "probe_budget"),
        ("policy: best\n", "policy"),
        ("cost: {kind: flops}\n", "cost.kind"),
        ("cost: {tokens_per_second: 0}\n", "cost.tokens_per_second"),
    ],
)
def test_bad_screening_keys_are_named(data_dir, body: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_grid(_grid(data_dir, "datasets: [d1.jsonl]\n" + body))
    assert "grid.yaml" in str(err.value) and expected in str(err.value)


@pytest.mark.parametrize(
    "body, expected",
    [
        ("", "threshold: policy 'threshold' needs"),
        ("policy: top_k\n", "top_k:"),
        ("policy: expected_gain\n", "budget:"),
        ("policy: success_probability\nbudget: {full_runs: 2}\n", "threshold:"),
        ("model: some/dir\nthreshold: 50\n", "predictor:"),
    ],
)
def test_screening_needs_what_its_policy_uses(body: str, expected: str) -> None:
    grid = GridSpec(datasets=["d1.jsonl"], **yaml.safe_load(body or "{}"))
    errors = grid.screening_errors()
    assert any(expected in error for error in errors), errors


def test_a_complete_screening_grid_has_no_errors(data_dir) -> None:
    body = "datasets: [d1.jsonl]\nthreshold: 55\npolicy: success_probability\nbudget: {gpu_hours: 2}\n"
    grid, candidates = load_grid(_grid(data_dir, body))
    assert grid.screening_errors() == [] and len(candidates) == 1


def test_output_dir_is_relative_to_the_grid_file_not_the_working_directory(data_dir, monkeypatch) -> None:
    from tuneahead_ray.screening._grid import grid_output_dir

    path = _grid(data_dir, "datasets: ['*.jsonl']\noutput_dir: results\n")
    grid, _ = load_grid(path)
    monkeypatch.chdir(data_dir.parent)
    assert grid_output_dir(grid, path.relative_to(data_dir.parent)) == data_dir.resolve() / "results"
