"""The probe pool and the features command on a real local Ray."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import ray

from tuneahead_ray._private.workers import PoolConfig
from tuneahead_ray.cli import main
from tuneahead_ray.features import HP_FEATURES, PROBE_FEATURES
from tuneahead_ray.probe import ProbePool, ProbeResult, ProbeSpec
from tuneahead_ray.schemas import Candidate, DatasetRef, HyperParams
from tuneahead_ray.testbed import DataSpec, write_dataset


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("pool")
    return [
        write_dataset(DataSpec(size=400, seed=1), root / "clean.jsonl"),
        write_dataset(DataSpec(size=400, label_noise=0.8, seed=2), root / "noisy.jsonl"),
    ]


def _candidates(datasets: list[Path], lrs: list[float]) -> list[Candidate]:
    return [
        Candidate(
            model="default",
            dataset=DatasetRef(path=path),
            hp=HyperParams(lr=lr, lora_r=4, lora_alpha=8, max_steps=400, max_seq_len=64),
        )
        for path in datasets
        for lr in lrs
    ]


def _ids(candidates: list[Candidate]) -> list[str]:
    return [c.candidate_id(c.dataset.fingerprint()) for c in candidates]


@pytest.mark.integration
@pytest.mark.slow
def test_pool_places_one_actor_per_gpu_and_probes_each_candidate_once(ray_session, datasets) -> None:
    candidates = _candidates(datasets, [1e-3, 3e-3, 1e-2])
    pool = ProbePool("default", PoolConfig(max_in_flight=2))
    try:
        assert pool.uses_gpus and len(pool.actors) == 2  # 2 (fake) GPUs, num_gpus=1 each
        # Both up before the run: an actor takes work only once started, and one could otherwise finish it all.
        ray.get([actor.__ray_ready__.remote() for actor in pool.actors])
        results = list(pool.run(candidates, ProbeSpec(min_steps=8, max_steps=8)))
    finally:
        pool.shutdown()
    assert all(isinstance(r, ProbeResult) for r in results)
    assert sorted(r.candidate_id for r in results) == sorted(_ids(candidates))
    assert len({r.worker for r in results}) == 2  # both actors did work
    assert all(set(r.features) == set(PROBE_FEATURES) and r.probe_steps == 8 for r in results)


@pytest.mark.integration
@pytest.mark.slow
def test_a_killed_actor_mid_probe_loses_and_duplicates_no_candidate(ray_session, datasets) -> None:
    candidates = _candidates(datasets, [1e-3, 2e-3, 3e-3, 5e-3])
    pool = ProbePool("default", PoolConfig(max_in_flight=2, max_retries=2))
    seen = []
    try:
        for result in pool.run(candidates, ProbeSpec(min_steps=40, max_steps=40)):
            seen.append(result)
            if len(seen) == 1:
                ray.kill(pool.actors[0], no_restart=True)  # it holds in-flight probes right now
    finally:
        pool.shutdown()
    assert pool.replaced >= 1
    ids = [r.candidate_id for r in seen]
    assert sorted(ids) == sorted(_ids(candidates))  # none lost, none twice


@pytest.mark.integration
@pytest.mark.slow
def test_features_command_writes_one_row_per_candidate_and_resumes(ray_session, datasets, tmp_path, capsys):
    grid = tmp_path / "grid.yaml"
    grid.write_text(
        "model: default\n"
        f"datasets: [{datasets[0]}, {datasets[1]}]\n"
        "hp: {lr: [0.001, 0.01], max_steps: 200, lora_r: 4, max_seq_len: 64}\n"
        "probe: {min_steps: 5, max_steps: 5}\n"
        "device: cpu\n",
        encoding="utf-8",
    )
    out = tmp_path / "features.parquet"
    assert main(["features", "--grid", str(grid), "--out", str(out)]) == 0
    table = pq.read_table(out)
    assert table.num_rows == 4
    from tuneahead_ray.features import STATIC_FEATURES

    for column in (*STATIC_FEATURES, *PROBE_FEATURES, *HP_FEATURES, "probe_seconds", "probe_share"):
        assert column in table.column_names
    checkpoint = out.with_name(out.name + ".jsonl")
    lines = checkpoint.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 4 and len({json.loads(line)["candidate_id"] for line in lines}) == 4
    # A second run finds every candidate done: nothing is probed again.
    assert main(["features", "--grid", str(grid), "--out", str(out)]) == 0
    assert checkpoint.read_text(encoding="utf-8").splitlines() == lines
    assert "wrote 4 rows" in capsys.readouterr().out


def test_features_command_rejects_a_bad_grid(tmp_path, capsys) -> None:
    grid = tmp_path / "grid.yaml"
    grid.write_text("datasets: [missing.jsonl]\nhp: {lr: [0.001, -1]}\n", encoding="utf-8")
    assert main(["features", "--grid", str(grid), "--out", str(tmp_path / "f.parquet")]) == 2
    err = capsys.readouterr().err
    assert "grid.yaml" in err and "hp.lr" in err
