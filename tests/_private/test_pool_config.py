"""PoolConfig is checked when built: each bad value is a ValueError naming its field and value (no Ray needed)."""

from __future__ import annotations

import argparse
import math

import pytest

from tuneahead_ray._private.cli_support import pool_config
from tuneahead_ray._private.workers import PoolConfig, PoolConfigError


def test_the_defaults_and_typical_configs_are_accepted() -> None:
    assert PoolConfig() == PoolConfig(num_workers=None, gpus_per_worker=1.0, max_in_flight=2, max_retries=2)
    gpu = PoolConfig(num_workers=8, gpus_per_worker=1, use_gpus=True, cpus_per_worker=4, device="cuda")
    assert gpu.shards == 1
    assert PoolConfig(gpus_per_worker=0.25, device="cuda:1").shards == 1  # four small-model workers per GPU
    assert PoolConfig(gpus_per_worker=4, job_timeout_s=600).shards == 4  # one model sharded over four GPUs
    assert PoolConfig(num_workers=2, cpus_per_worker=0, use_gpus=False, max_retries=0, device="cpu").max_retries == 0
    assert PoolConfig(use_gpus=True, cpus_per_worker=0).cpus_per_worker == 0  # counted by GPUs, not CPUs


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("num_workers", 0, "whole number >= 1"),
        ("num_workers", -2, "whole number >= 1"),
        ("num_workers", 2.5, "whole number >= 1"),
        ("num_workers", True, "whole number >= 1"),
        ("gpus_per_worker", 0, "fraction in (0, 1] or a whole number"),
        ("gpus_per_worker", -1.0, "fraction in (0, 1] or a whole number"),
        ("gpus_per_worker", 1.5, "fraction in (0, 1] or a whole number"),
        ("gpus_per_worker", math.nan, "fraction in (0, 1] or a whole number"),
        ("gpus_per_worker", math.inf, "fraction in (0, 1] or a whole number"),
        ("use_gpus", 1, "None, True or False"),
        ("cpus_per_worker", -1, "finite number >= 0"),
        ("cpus_per_worker", math.nan, "finite number >= 0"),
        ("cpus_per_worker", 0, "unless num_workers is set"),  # the pool would divide the cluster's CPUs by 0
        ("max_in_flight", 0, "whole number >= 1"),  # no job would ever be submitted
        ("max_in_flight", -1, "whole number >= 1"),
        ("max_retries", -1, "whole number >= 0"),
        ("device", "gpu", "auto, cpu or cuda[:N]"),
        ("device", "cuda:x", "auto, cpu or cuda[:N]"),
        ("job_timeout_s", 0, "positive number of seconds"),
        ("job_timeout_s", -5.0, "positive number of seconds"),
        ("job_timeout_s", math.nan, "positive number of seconds"),
    ],
)
def test_a_bad_value_is_refused_naming_its_field_and_value(field: str, value: object, problem: str) -> None:
    with pytest.raises(PoolConfigError) as caught:
        PoolConfig(**{field: value})
    assert isinstance(caught.value, ValueError)
    assert list(caught.value.problems) == [field]
    message = str(caught.value)
    assert message.startswith(f"PoolConfig: {field} ") and problem in message and f"got {value!r}" in message


def test_every_bad_value_is_named_at_once() -> None:
    with pytest.raises(PoolConfigError) as caught:
        PoolConfig(num_workers=0, max_in_flight=0, job_timeout_s=-1)
    assert list(caught.value.problems) == ["num_workers", "max_in_flight", "job_timeout_s"]


def _args(workers: int | None = None, gpus_per_worker: float = 1.0) -> argparse.Namespace:
    return argparse.Namespace(workers=workers, gpus_per_worker=gpus_per_worker)


def test_the_command_line_names_the_flag() -> None:
    assert pool_config(_args(workers=3, gpus_per_worker=0.5), "cuda") == PoolConfig(
        num_workers=3, gpus_per_worker=0.5, device="cuda"
    )
    with pytest.raises(ValueError, match=r"^--workers: must be a whole number >= 1 \(or None\), got 0$"):
        pool_config(_args(workers=0), "auto")
    with pytest.raises(ValueError, match=r"^--gpus-per-worker: .*got 1\.5$"):
        pool_config(_args(gpus_per_worker=1.5), "auto")
    with pytest.raises(ValueError, match=r"^device: must be auto, cpu or cuda\[:N\], got 'tpu'$"):
        pool_config(_args(), "tpu")


def test_a_bad_flag_is_an_error_line_before_ray_starts(tmp_path, capsys, monkeypatch) -> None:
    from tuneahead_ray.cli import main

    def no_ray(args):
        raise AssertionError("Ray started before the pool's flags were checked")

    monkeypatch.setattr("tuneahead_ray.corpus.cli.init_ray", no_ray)
    corpus = tmp_path / "corpus.parquet"
    assert main(["corpus", "refeature", "--corpus", str(corpus), "--workers", "0"]) == 2
    assert capsys.readouterr().err == "error: --workers: must be a whole number >= 1 (or None), got 0\n"
