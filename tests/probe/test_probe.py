"""The probe: spec bounds, trajectory features on hand-made traces, and real probes on the tiny model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from tuneahead_ray.features import DATASET_PROBE_FEATURES, PROBE_FEATURES
from tuneahead_ray.probe import (
    DATASET_PROBE_HP,
    DatasetProbeSpec,
    ProbeSpec,
    ProbeTrace,
    ReferenceScore,
    RunWorker,
    trajectory_features,
)
from tuneahead_ray.probe._base_scores import BaseScores, answer_loss_sums, is_identity_adapter, mean_answer_loss
from tuneahead_ray.probe._probe import _hoyer_sparsity, run_probe
from tuneahead_ray.probe._reference import reference_examples
from tuneahead_ray.schemas import Candidate, DatasetRef, HyperParams
from tuneahead_ray.testbed import DataSpec, benchmark_items, write_dataset
from tuneahead_ray.training import StepTrainer, attach_adapter, detach_adapter


def test_probe_length_is_a_fraction_of_the_run_within_floor_and_cap() -> None:
    spec = ProbeSpec(fraction=0.05, min_steps=20, max_steps=100)
    assert spec.steps_for(1000) == 50
    assert spec.steps_for(100) == 20  # floor
    assert spec.steps_for(10_000) == 100  # cap
    assert spec.steps_for(12) == 12  # never longer than the run itself


def test_short_probes_still_measure_at_least_two_interval_points() -> None:
    spec = ProbeSpec(interval=20)
    assert spec.interval_for(100) == 20  # 5 points
    assert spec.interval_for(17) == 8  # 2 points, where every 20 steps would give none
    assert spec.interval_for(3) == 2


def test_probe_spec_rejects_floor_above_cap() -> None:
    with pytest.raises(ValidationError, match="min_steps"):
        ProbeSpec(min_steps=50, max_steps=10)


def _trace(losses: list[float], grad_norms: list[float] | None = None, heldout_after: float = 1.0) -> ProbeTrace:
    return ProbeTrace(
        total_steps=100,
        losses=losses,
        grad_norms=grad_norms or [1.0] * len(losses),
        lrs=[1e-3] * len(losses),
        heldout_before=1.5,
        heldout_after=heldout_after,
    )


def test_log_loss_slope_and_decay_ratio_of_an_exponential_decay() -> None:
    losses = [2.0 * math.exp(-0.1 * t) for t in range(20)]
    features = trajectory_features(_trace(losses), ProbeSpec())
    assert set(features) == set(PROBE_FEATURES)
    assert features["probe_loss_slope"] == pytest.approx(-0.1, abs=1e-9)
    assert features["probe_decay_ratio"] == pytest.approx(np.mean(losses[-3:]) / np.mean(losses[:3]))
    assert features["probe_heldout_delta"] == pytest.approx(-0.5)
    assert features["probe_diverged"] == 0.0


@pytest.mark.parametrize(
    "losses, grads, heldout",
    [
        ([1.0, 1.2, float("nan")], None, 1.0),  # NaN loss
        ([1.0, 1.1, 1.2], [1.0, float("inf"), 1.0], 1.0),  # exploding gradient
        ([1.0, 2.0, 5.0, 9.0, 12.0], None, 1.0),  # loss blow-up past 3x the first step
        ([1.0, 0.9, 0.8], None, float("nan")),  # held-out loss non-finite after the probe
    ],
)
def test_divergence_flag(losses: list[float], grads: list[float] | None, heldout: float) -> None:
    assert trajectory_features(_trace(losses, grads, heldout), ProbeSpec())["probe_diverged"] == 1.0


def test_hoyer_sparsity_extremes() -> None:
    assert _hoyer_sparsity(torch.ones(100)) == pytest.approx(0.0, abs=1e-6)
    one_hot = torch.zeros(100)
    one_hot[3] = 5.0
    assert _hoyer_sparsity(one_hot) == pytest.approx(1.0)


@pytest.fixture(scope="module")
def worker() -> RunWorker:
    torch.set_num_threads(1)
    return RunWorker("default", "cpu")


@pytest.fixture(scope="module")
def clean_data(tmp_path_factory: pytest.TempPathFactory) -> DatasetRef:
    path = write_dataset(DataSpec(size=600, seed=5), tmp_path_factory.mktemp("probe") / "clean.jsonl")
    return DatasetRef(path=path)


def _candidate(data: DatasetRef, **hp: object) -> Candidate:
    fields = {"lr": 3e-3, "max_steps": 200, "max_seq_len": 64, "lora_r": 4, "lora_alpha": 8, **hp}
    return Candidate(model="default", dataset=data, hp=HyperParams(**fields))


@pytest.mark.slow
def test_base_weights_are_bit_identical_after_ten_probes(worker: RunWorker, clean_data: DatasetRef) -> None:
    before = {k: v.clone() for k, v in worker.model.state_dict().items()}
    spec = ProbeSpec(min_steps=5, max_steps=5)
    for seed in range(10):
        result = worker.probe(_candidate(clean_data, seed=seed, lr=10 ** (-4 + seed / 4)), spec)
        assert result.probe_steps > 0
    after = worker.model.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any("lora" in name for name, _ in worker.model.named_modules())


@pytest.mark.slow
def test_diverging_lr_is_a_flagged_result_not_an_exception(worker: RunWorker, clean_data: DatasetRef) -> None:
    result = worker.probe(_candidate(clean_data, lr=10.0, max_grad_norm=None), ProbeSpec(min_steps=20, max_steps=20))
    assert result.diverged
    assert result.features["probe_diverged"] == 1.0
    sound = worker.probe(_candidate(clean_data), ProbeSpec(min_steps=20, max_steps=20))
    assert not sound.diverged
    assert sound.features["probe_final_loss"] < sound.features["probe_initial_loss"]


@pytest.mark.slow
def test_probe_is_the_first_k_steps_of_the_run_and_a_go_run_resumes_from_it(
    worker: RunWorker, clean_data: DatasetRef, tmp_path
) -> None:
    candidate = _candidate(clean_data, max_steps=30, lora_dropout=0.1)
    spec = ProbeSpec(min_steps=10, max_steps=10, interval=2)
    probe = worker.probe(candidate, spec, state_dir=str(tmp_path / "state"))
    assert probe.state_dir is not None

    def fresh_trainer() -> StepTrainer:
        adapted = attach_adapter(worker.model, candidate.hp)
        return StepTrainer(adapted, worker._encoded(candidate), candidate.hp, 30, worker.tokenizer.pad_token_id)

    straight = fresh_trainer()
    losses = [straight.step().loss for _ in range(30)]
    worker.model = detach_adapter(straight.model)
    resumed = fresh_trainer()
    resumed.restore_state(probe.state_dir)
    continued = [resumed.step().loss for _ in range(20)]
    worker.model = detach_adapter(resumed.model)
    # The probe's measurements did not perturb the trajectory: the resumed run is the uninterrupted one, exactly.
    assert continued == losses[10:]
    assert probe.features["probe_initial_loss"] == pytest.approx(np.mean(losses[:3]), abs=1e-6)


def test_before_scores_are_the_base_models_and_shared_across_candidates(
    worker: RunWorker, clean_data: DatasetRef
) -> None:
    spec = ProbeSpec(min_steps=4, max_steps=4, interval=2, reference_size=16)
    first = worker.probe(_candidate(clean_data, lr=1e-4, lora_r=4), spec)
    # Same data and seed, other hyperparameters: the "before" scores come from the worker's memory and are equal.
    second = worker.probe(_candidate(clean_data, lr=5e-3, lora_r=16, lora_alpha=32), spec)
    for name in ("probe_heldout_before", "probe_ref_loss_before", "probe_ref_match_before"):
        assert first.features[name] == second.features[name]
    assert math.isfinite(first.features["probe_grad_consistency"])  # 4 steps, interval 2: two points
    # ... and they are what the bare base model scores on those rows, measured without any adapter.
    candidate = _candidate(clean_data)
    pairs = worker._encoded(candidate)
    pad_id = worker.tokenizer.pad_token_id
    trainer = StepTrainer(attach_adapter(worker.model, candidate.hp), pairs, candidate.hp, 200, pad_id)
    rows = trainer.unvisited_this_epoch(spec.heldout_size)
    worker.model = detach_adapter(trainer.model)
    bare = mean_answer_loss(*answer_loss_sums(worker.model, pairs, rows, pad_id))
    assert first.features["probe_heldout_before"] == pytest.approx(bare, rel=1e-6)
    # A worker without memory of them measures the same values.
    fresh = RunWorker("default", "cpu").probe(_candidate(clean_data, lr=5e-3, lora_r=16, lora_alpha=32), spec)
    for name in PROBE_FEATURES:
        assert fresh.features[name] == pytest.approx(second.features[name], rel=1e-5, abs=1e-7, nan_ok=True), name


def test_shared_base_scores_need_a_data_key_and_an_identity_adapter(worker: RunWorker, clean_data) -> None:
    candidate = _candidate(clean_data)
    pairs = worker._encoded(candidate)
    pad_id = worker.tokenizer.pad_token_id
    trainer = StepTrainer(attach_adapter(worker.model, candidate.hp), pairs, candidate.hp, 200, pad_id)
    try:
        assert is_identity_adapter(trainer.model)
        with pytest.raises(ValueError, match="data_key"):
            run_probe(trainer, 2, ProbeSpec(min_steps=2, max_steps=2), base=BaseScores())
        for _ in range(5):  # past the warmup's zero first lr
            trainer.step()
        assert not is_identity_adapter(trainer.model)  # a trained adapter: its scores are not the base model's
    finally:
        worker.model = detach_adapter(trainer.model)


# ------------------------------------------------------------------------------------------ reference set


def test_reference_features_are_nan_without_a_reference() -> None:
    features = trajectory_features(_trace([1.0, 0.9, 0.8]), ProbeSpec())
    reference = [name for name in PROBE_FEATURES if "_ref_" in name]
    assert len(reference) == 9
    assert all(math.isnan(features[name]) for name in reference)


def test_reference_features_compare_the_task_with_the_candidates_own_rows() -> None:
    trace = _trace([1.0, 0.9, 0.8], heldout_after=1.0)  # own held-out loss 1.5 -> 1.0
    trace.reference_before = ReferenceScore(loss=0.9, exact_match=0.5, token_accuracy=0.7)
    trace.reference_after = ReferenceScore(loss=1.1, exact_match=0.25, token_accuracy=0.6)
    features = trajectory_features(trace, ProbeSpec())
    assert features["probe_ref_loss_delta"] == pytest.approx(0.2)
    assert features["probe_ref_match_delta"] == pytest.approx(-0.25)
    assert features["probe_ref_token_acc_delta"] == pytest.approx(-0.1)
    # Own rows got easier (-0.5) while the task got harder (+0.2): the probe learns something the task ignores.
    assert features["probe_ref_transfer"] == pytest.approx(0.7)
    assert features["probe_own_ref_gap"] == pytest.approx(1.0 - 1.1)


def test_default_reference_is_clean_benchmark_family_data_but_not_the_benchmark() -> None:
    prompts, answers = reference_examples(None, 64)
    assert len(prompts) == len(answers) == 64
    families = {prompt.split()[0] for prompt in prompts}
    assert families <= {"add", "count", "compare", "color", "home", "code"}
    benchmark = {(item.prompt, item.answer) for item in benchmark_items(16)}
    # Drawn from the families' generators, not copied from the benchmark: only the chance coincidences any
    # training data of these small item spaces has (a quarter of the rows here, e.g. popular entities' facts),
    # counted against the 480-item benchmark (the 4,800-item one covers most of the small cells' item spaces).
    assert sum((p, a) in benchmark for p, a in zip(prompts, answers, strict=True)) < 32


def test_reference_from_a_user_file_is_a_seeded_bounded_sample(tmp_path) -> None:
    path = write_dataset(DataSpec(size=50, seed=3), tmp_path / "target.jsonl")
    first = reference_examples(str(path), 20)
    assert len(first[0]) == 20
    assert first == reference_examples(str(path), 20)
    assert len(reference_examples(str(path), 500)[0]) == 50


@pytest.fixture(scope="module")
def off_target_data(tmp_path_factory: pytest.TempPathFactory) -> DatasetRef:
    path = write_dataset(DataSpec(size=600, seed=5, off_target=1.0), tmp_path_factory.mktemp("probe") / "off.jsonl")
    return DatasetRef(path=path)


@pytest.mark.slow
def test_reference_moves_toward_the_task_on_on_target_data_more_than_on_off_target_data(
    worker: RunWorker, clean_data: DatasetRef, off_target_data: DatasetRef
) -> None:
    spec = ProbeSpec(min_steps=30, max_steps=30)
    on = worker.probe(_candidate(clean_data), spec).features
    off = worker.probe(_candidate(off_target_data), spec).features
    assert on["probe_ref_loss_before"] == pytest.approx(off["probe_ref_loss_before"])  # the base model, both times
    assert on["probe_ref_loss_delta"] < 0
    assert on["probe_ref_loss_delta"] < off["probe_ref_loss_delta"]
    assert on["probe_ref_transfer"] < off["probe_ref_transfer"]


def test_dataset_probe_spec_needs_a_fixed_length_and_keeps_the_protocol_for_unset_fields() -> None:
    with pytest.raises(ValidationError, match="max_steps"):
        DatasetProbeSpec(hp=HyperParams(epochs=1))
    assert DatasetProbeSpec().hp == DATASET_PROBE_HP and DATASET_PROBE_HP.max_steps == 20
    shorter = DatasetProbeSpec.model_validate({"hp": {"max_steps": 5}})  # as a grid's `dataset_probe:` block
    assert shorter.hp == DATASET_PROBE_HP.model_copy(update={"max_steps": 5})
    with pytest.raises(ValidationError, match="lr"):
        DatasetProbeSpec.model_validate({"hp": {"lr": -1}})
    with pytest.raises(ValidationError, match="2..1000 steps, got 1"):
        DatasetProbeSpec.model_validate({"hp": {"max_steps": 1}})
    measured = shorter.probe_spec(ProbeSpec())  # every one of its 5 steps, at least two measurement points
    assert (measured.steps_for(5), measured.interval_for(5)) == (5, 2)


@pytest.mark.slow
def test_dataset_probe_is_one_fixed_run_per_dataset_that_tells_datasets_apart(
    worker: RunWorker, clean_data: DatasetRef, tmp_path
) -> None:
    spec = ProbeSpec()
    first = worker.dataset_probe(clean_data, spec, DatasetProbeSpec())
    assert list(first.features) == list(DATASET_PROBE_FEATURES)
    assert first.probe_steps == first.total_steps == 20 and not first.diverged
    # Its hyperparameters are the protocol's, not a candidate's: the same dataset gives the same features.
    again = worker.dataset_probe(clean_data, spec, DatasetProbeSpec())
    np.testing.assert_allclose(list(again.features.values()), list(first.features.values()), rtol=1e-6)
    # It tells a dataset whose answers are all wrong from a clean one: its loss starts higher, and the
    # reference set (the target task) gets fewer answers right after it than after the clean one's.
    noisy = DatasetRef(path=write_dataset(DataSpec(size=600, seed=5, label_noise=1.0), tmp_path / "noisy.jsonl"))
    damaged = worker.dataset_probe(noisy, spec, DatasetProbeSpec()).features
    clean = first.features
    assert damaged["dataset_probe_initial_loss"] > clean["dataset_probe_initial_loss"] + 0.2
    assert damaged["dataset_probe_ref_match_delta"] < clean["dataset_probe_ref_match_delta"]
