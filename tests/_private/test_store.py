"""The result store: durable appends, torn-line recovery, atomic Parquet, resume from a shipped Parquet."""

from __future__ import annotations

import math

import pyarrow.parquet as pq
import pytest

from tuneahead_ray._private.atomic import write_bytes_atomic, write_parquet_atomic
from tuneahead_ray._private.store import ResultStore


def test_rows_survive_a_restart_and_a_torn_last_line_is_dropped(tmp_path) -> None:
    store = ResultStore(tmp_path / "out.parquet")
    store.append({"candidate_id": "a", "x": 1.0})
    store.append({"candidate_id": "b", "x": float("nan")})
    with open(store.checkpoint_path, "a", encoding="utf-8") as handle:
        handle.write('{"candidate_id": "c", "x"')  # killed mid-write
    again = ResultStore(tmp_path / "out.parquet")
    assert sorted(again.rows) == ["a", "b"]
    assert math.isnan(again.rows["b"]["x"])
    again.append({"candidate_id": "d", "x": 4.0})  # starts on a fresh line
    assert sorted(ResultStore(tmp_path / "out.parquet").rows) == ["a", "b", "d"]


def test_flush_writes_parquet_in_key_order_and_leaves_no_temp_file(tmp_path) -> None:
    store = ResultStore(tmp_path / "out.parquet")
    for key in ["b", "a", "c"]:
        store.append({"candidate_id": key, "x": 1.0})
    path = store.flush()
    assert pq.read_table(path).column("candidate_id").to_pylist() == ["a", "b", "c"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.parquet", "out.parquet.jsonl"]


def test_a_parquet_without_its_checkpoint_seeds_the_store(tmp_path) -> None:
    store = ResultStore(tmp_path / "corpus.parquet")
    store.append({"candidate_id": "a", "x": 1.0})
    store.flush()
    store.checkpoint_path.unlink()  # as shipped: the Parquet only
    resumed = ResultStore(tmp_path / "corpus.parquet")
    assert "a" in resumed and resumed.checkpoint_path.exists()


def test_atomic_write_replaces_the_whole_file(tmp_path) -> None:
    import pyarrow as pa

    path = write_parquet_atomic(pa.table({"x": [1, 2]}), tmp_path / "t.parquet")
    write_parquet_atomic(pa.table({"x": [3]}), path)
    assert pq.read_table(path).column("x").to_pylist() == [3]


def test_atomic_bytes_replace_the_file_with_the_mode_asked_and_a_failure_keeps_the_old_one(tmp_path) -> None:
    target = tmp_path / "sub" / "launcher"
    write_bytes_atomic(b"old", target)
    write_bytes_atomic(b"new", target, mode=0o700)
    assert target.read_bytes() == b"new" and target.stat().st_mode & 0o777 == 0o700
    with pytest.raises(TypeError):
        write_bytes_atomic("not bytes", target)  # type: ignore[arg-type]
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["launcher"]  # no temp file left behind


def test_a_fresh_row_equals_the_row_a_resumed_store_reads(tmp_path) -> None:
    store = ResultStore(tmp_path / "rows.parquet")
    store.append({"candidate_id": "a", "z": (1, 2), "b": 1.5, "nan": float("nan")})
    fresh = store.rows["a"]
    resumed = ResultStore(tmp_path / "rows.parquet").rows["a"]
    assert list(fresh) == list(resumed) == ["b", "candidate_id", "nan", "z"]
    assert fresh["z"] == resumed["z"] == [1, 2]


def test_feature_checkpoint_refuses_rows_of_another_feature_protocol(tmp_path) -> None:
    from tuneahead_ray.features import FeatureProtocolError, open_feature_store
    from tuneahead_ray.probe import ProbeSpec

    path = tmp_path / "features.parquet"
    store = open_feature_store(path, ProbeSpec())
    store.append({"candidate_id": "a", "x": 1.0})
    assert "a" in open_feature_store(path, ProbeSpec())  # same protocol: resumes
    with pytest.raises(FeatureProtocolError, match=r"features\.parquet.*1 rows.*probe\.interval"):
        open_feature_store(path, ProbeSpec(interval=10))
    (tmp_path / "features.parquet.protocol.json").unlink()
    with pytest.raises(FeatureProtocolError, match="older version"):
        open_feature_store(path, ProbeSpec())
    fresh = tmp_path / "other.parquet"
    assert len(open_feature_store(fresh, ProbeSpec(interval=10))) == 0  # a new checkpoint records its protocol
    assert (tmp_path / "other.parquet.protocol.json").exists()
