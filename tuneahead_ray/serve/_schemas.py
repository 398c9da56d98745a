"""Request and response bodies of the HTTP API (they are also its OpenAPI schema).

Feature values are JSON numbers, strictly: strings and booleans are refused, and so are the non-standard
``NaN``/``Infinity`` literals (and numbers that overflow to infinity). ``null`` means *missing*, which LightGBM
handles the way it handled NaN during training (e.g. ``hp_max_grad_norm`` is missing when clipping is off).
Interval bounds are ``null`` when the interval is unbounded (too few calibration rows for its level).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AllowInfNan, BaseModel, ConfigDict, Field, Strict, field_validator, model_validator

from tuneahead_ray.schemas import DatasetFormat, HyperParams

__all__ = [
    "BatchInfo",
    "CandidateSpec",
    "ContributionOut",
    "DatasetSpec",
    "ErrorBody",
    "ExplainRequest",
    "ExplainResponse",
    "ExplanationOut",
    "HealthResponse",
    "ModelResponse",
    "ModelVersion",
    "PredictRequest",
    "PredictResponse",
    "Prediction",
]

FeatureValue = Annotated[float, Strict(), AllowInfNan(False)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatasetSpec(_Body):
    path: str = Field(min_length=1, max_length=1024, description="File under the server's data root.")
    format: DatasetFormat = Field("auto", description="Record layout; auto detects it from the first record.")

    @field_validator("path")
    @classmethod
    def _no_nul(cls, value: str) -> str:
        if "\x00" in value:
            raise ValueError("path contains a NUL character")
        return value


class CandidateSpec(_Body):
    """A candidate run whose meta-features the server computes: descriptors of the dataset and a short probe."""

    model: str = Field(description="Base model; must be the one the server probes with.")
    dataset: DatasetSpec
    hp: HyperParams = Field(default_factory=HyperParams)


class PredictRequest(_Body):
    """Either meta-feature ``rows`` (one value per model feature) or ``candidates`` to featurize first."""

    rows: list[dict[str, FeatureValue | None]] | None = Field(
        None, min_length=1, description="One object per run: every model feature -> number (null = missing)."
    )
    candidates: list[CandidateSpec] | None = Field(None, min_length=1, description="Candidate runs to featurize.")

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> PredictRequest:
        if (self.rows is None) == (self.candidates is None):
            raise ValueError("give exactly one of 'rows' and 'candidates'")
        return self


class ExplainRequest(PredictRequest):
    top_k: int = Field(5, ge=1, le=10_000, description="Contributions listed per row, largest |SHAP| first.")


class ModelVersion(BaseModel):
    card_sha256: str = Field(description="Content hash of the model card: identifies the model.")
    created: str = Field(description="When the model was saved (UTC, ISO 8601).")
    target: str
    level: float = Field(description="Coverage level of the prediction interval.")


class Prediction(BaseModel):
    prediction: float
    lower: float | None = Field(description="Lower end of the interval; null when unbounded.")
    upper: float | None = Field(description="Upper end of the interval; null when unbounded.")
    novelty: float | None = Field(
        description="Distance from the runs the model learned from (about 1 for runs like them); null when the "
        "model scores no novelty."
    )
    novel: bool = Field(description="Beyond the usual distance: the prediction is uncertain and its interval widened.")
    novel_features: list[str] = Field(description="Features beyond the range of every training run, furthest first.")
    candidate_id: str | None = Field(None, description="For candidate specs: the candidate's content id.")


class BatchInfo(BaseModel):
    """The model call that computed these predictions: how many requests and rows it served together."""

    requests: int
    rows: int


class PredictResponse(BaseModel):
    model: ModelVersion
    predictions: list[Prediction]
    batch: BatchInfo


class ContributionOut(BaseModel):
    feature: str
    label: str
    value: float | None = Field(description="The feature's value; null when missing.")
    contribution: float = Field(description="SHAP value, in target units.")


class ExplanationOut(BaseModel):
    prediction: float
    base_value: float = Field(description="base_value + the sum of all contributions = prediction.")
    top: list[ContributionOut]
    diagnostics: list[str]
    candidate_id: str | None = None


class ExplainResponse(BaseModel):
    model: ModelVersion
    explanations: list[ExplanationOut]


class ModelResponse(BaseModel):
    model: ModelVersion
    card: dict[str, Any] = Field(description="The model card (non-finite numbers as null).")


class HealthResponse(BaseModel):
    status: str
    model: ModelVersion


class ErrorBody(BaseModel):
    error: str = Field(description="Stable error code, e.g. wrong_columns, payload_too_large, unauthorized.")
    detail: str = Field(description="What was wrong, naming the row, column or path.")
