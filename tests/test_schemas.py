"""Schema bounds, normalisation, step arithmetic and content-addressed ids."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from tuneahead_ray.schemas import LORA_TARGET_MODULES, Candidate, DatasetRef, HyperParams


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"lr": 0}, "lr"),
        ({"lr": -1e-4}, "lr"),
        ({"lora_r": 0}, "lora_r"),
        ({"target_modules": ["q_proj", "foo_proj"]}, "foo_proj"),
        ({"target_modules": "q_proj,attn"}, "target_modules"),
        ({"target_modules": []}, "target_modules"),
        ({"lr_schedule": "warp"}, "lr_schedule"),
        ({"lora_dropout": 1.0}, "lora_dropout"),
        ({"lora_dropout": 1.5}, "lora_dropout"),
        ({"batch_size": 0}, "batch_size"),
        ({"learning_rate": 1e-3}, "learning_rate"),
    ],
)
def test_hyperparams_bounds_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        HyperParams(**kwargs)
    assert field in str(info.value)
    assert len(info.value.errors()) == 1
    assert info.value.errors()[0]["loc"] == (next(iter(kwargs)),)


def test_unknown_target_module_lists_the_choices() -> None:
    with pytest.raises(ValidationError) as info:
        HyperParams(target_modules=["q_proj", "foo_proj"])
    message = str(info.value)
    assert "target_modules" in message and "foo_proj" in message and "down_proj" in message


@pytest.mark.parametrize("value", ["q_proj,v_proj", "v_proj, q_proj", " v_proj ,q_proj,", ["v_proj", "q_proj"]])
def test_target_modules_normalise_to_canonical_tuple(value: object) -> None:
    assert HyperParams(target_modules=value).target_modules == ("q_proj", "v_proj")


def test_target_modules_default_is_all_linear_layers() -> None:
    assert HyperParams().target_modules == LORA_TARGET_MODULES


def test_target_modules_set_is_validated() -> None:
    with pytest.raises(ValidationError):
        HyperParams(target_modules={"foo_proj"})


def test_valid_boundaries_are_accepted() -> None:
    hp = HyperParams(lr=10, lora_r=1, lora_dropout=0.0, batch_size=1, lr_schedule="cosine")
    assert (hp.lr, hp.lora_r, hp.batch_size, hp.lr_schedule) == (10, 1, 1, "cosine")


@pytest.mark.parametrize(
    ("kwargs", "num_examples", "steps"),
    [
        ({"max_steps": 100, "epochs": 3}, 1000, 100),  # max_steps wins
        ({"max_steps": 7}, 10_000, 7),
        ({"epochs": 2, "batch_size": 16}, 100, 14),  # ceil(100 / 16) = 7 per epoch
        ({"batch_size": 16}, 100, 7),  # default: one epoch
        ({"epochs": 3, "batch_size": 10}, 100, 30),  # exact division
        ({"epochs": 1, "batch_size": 32}, 5, 1),  # partial batch still counts as a step
        ({"epochs": 0.25, "batch_size": 10}, 400, 10),
        ({"epochs": 1}, 0, 1),  # never zero steps
    ],
)
def test_total_steps(kwargs: dict, num_examples: int, steps: int) -> None:
    assert HyperParams(**kwargs).total_steps(num_examples) == steps


def test_epochs_default_to_one_only_without_max_steps() -> None:
    assert HyperParams().epochs == 1.0
    assert HyperParams(max_steps=5).epochs is None


def _candidate(tmp_path: Path, **hp: object) -> Candidate:
    data = tmp_path / "d.jsonl"
    if not data.exists():
        data.write_text('{"prompt": "p", "response": "r"}\n')
    return Candidate(model="default", dataset=DatasetRef(path=data), hp=HyperParams(**hp))


def test_candidate_id_is_stable_for_equal_content(tmp_path: Path) -> None:
    a = _candidate(tmp_path, lr=1e-3, target_modules=["v_proj", "q_proj"])
    b = _candidate(tmp_path, lr=0.001, target_modules="q_proj,v_proj")
    assert a.candidate_id() == b.candidate_id()
    assert len(a.candidate_id()) == 16
    assert a.candidate_id("abc") == b.candidate_id("abc") != a.candidate_id()


@pytest.mark.parametrize(
    "change",
    [
        {"lr": 2e-3},
        {"lora_r": 16},
        {"target_modules": ["q_proj"]},
        {"batch_size": 8},
        {"seed": 1},
        {"lr_schedule": "cosine"},
    ],
)
def test_candidate_id_changes_with_any_hyperparameter(tmp_path: Path, change: dict) -> None:
    base = {"lr": 1e-3, "lora_r": 8, "target_modules": ["q_proj", "v_proj"], "batch_size": 16, "seed": 0}
    assert _candidate(tmp_path, **base).candidate_id() != _candidate(tmp_path, **{**base, **change}).candidate_id()


def test_candidate_id_depends_on_model_and_format(tmp_path: Path) -> None:
    base = _candidate(tmp_path)
    assert base.model_copy(update={"model": "/models/other"}).candidate_id() != base.candidate_id()
    other_format = base.model_copy(update={"dataset": DatasetRef(path=base.dataset.path, format="chat")})
    assert other_format.candidate_id() != base.candidate_id()


def test_candidate_rejects_blank_model(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="model"):
        Candidate(model="  ", dataset=DatasetRef(path=tmp_path / "d.json"))


def test_dataset_fingerprint_is_content_based(tmp_path: Path) -> None:
    original = tmp_path / "a.json"
    original.write_text('[{"prompt": "p", "response": "r"}]')
    copy = tmp_path / "renamed_copy.json"
    shutil.copyfile(original, copy)
    other = tmp_path / "other.json"
    other.write_text('[{"prompt": "p", "response": "R"}]')
    fingerprint = DatasetRef(path=original).fingerprint()
    assert fingerprint == DatasetRef(path=copy).fingerprint()
    assert fingerprint != DatasetRef(path=other).fingerprint()
    assert len(fingerprint) == 16


def test_dataset_ref_resolves_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert DatasetRef(path="d.json").path == tmp_path.resolve() / "d.json"
    with pytest.raises(ValidationError, match="format"):
        DatasetRef(path="d.json", format="csv")


def test_the_shipped_corpus_run_ids_still_hash_from_their_stored_specs() -> None:
    """New hyperparameter fields must not change the ids of existing runs (refeature checks them)."""
    import pyarrow.parquet as pq

    from tuneahead_ray.corpus._sampling import CorpusSpec
    from tuneahead_ray.predictor import default_corpus_path
    from tuneahead_ray.testbed import DataSpec

    rows = pq.read_table(default_corpus_path(), columns=["candidate_id", "data_spec", "hp"]).to_pylist()
    for row in rows:
        spec = CorpusSpec(
            data=DataSpec.model_validate_json(row["data_spec"]), hp=HyperParams.model_validate_json(row["hp"])
        )
        assert spec.run_id() == row["candidate_id"]
