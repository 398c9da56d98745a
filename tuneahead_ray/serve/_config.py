"""The public configuration of the Serve application: the ``args`` of ``configs/serve.yaml``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tuneahead_ray.predictor import ensure_default_predictor

__all__ = ["ServeConfig"]

MIB = 1 << 20


class ServeConfig(BaseModel):
    """What the prediction service loads, whom it admits and how much one request may ask for.

    Relative paths resolve against the working directory of the process that builds the application (the one
    running ``serve run`` or ``tuneahead-ray serve``); give absolute paths for ``serve deploy`` to a cluster.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_dir: Literal["default"] | Path = Field(
        "default",
        description="Directory written by `predictor train` (its sha256 card is verified), or `default`: the default "
        "predictor, trained on the shipped corpus of runs of the embedded model and cached on first use, as "
        "`screen` does",
    )
    token_env: str | None = Field(None, min_length=1, description="Environment variable holding the bearer token.")
    token_file: Path | None = Field(None, description="File holding the bearer token (surrounding whitespace ignored).")
    max_rows: int = Field(1000, ge=1, le=100_000, description="Most meta-feature rows per request.")
    max_body_bytes: int = Field(MIB, ge=1024, description="Largest accepted request body, in bytes.")
    data_root: Path | None = Field(
        None,
        description="Directory that candidate datasets must lie under (relative dataset paths resolve against "
        "it); None disables candidate specs and the FeatureWorker",
    )
    max_candidates: int = Field(8, ge=1, le=8, description="Most candidate specs per request (each runs a probe).")
    base_model: str = Field("default", min_length=1, description="Base model the FeatureWorker probes with.")
    device: str = Field("auto", description="Device of the FeatureWorker's base model: auto, cpu or cuda[:N].")
    probe: dict[str, float] = Field(
        default_factory=dict,
        description="ProbeSpec fields overriding the model's training protocol (its card's, else the defaults); one "
        "that contradicts the card is refused when the FeatureWorker starts. A plain mapping here, "
        "validated when the FeatureWorker is built, so that the ingress does not import torch",
    )
    max_batch_size: int = Field(
        32,
        ge=1,
        le=1024,
        description="Most requests predicted in one model call; a request of at least this many rows is a batch "
        "already and is predicted on its own, in parallel with the batches.",
    )
    batch_wait_timeout_s: float = Field(
        0.0,
        ge=0,
        le=1,
        description="How long a batch waits for more requests after its first one. 0: a batch is whatever queued "
        "while the previous one ran, which under load is a full batch anyway, and a lone request waits for nothing",
    )

    @model_validator(mode="after")
    def _one_token_source(self) -> ServeConfig:
        if self.token_env is not None and self.token_file is not None:
            raise ValueError("set at most one of token_env and token_file")
        return self

    def model_dir_path(self) -> Path:
        """The absolute predictor directory (the default predictor's is trained now unless cached)."""
        if self.model_dir == "default":
            return ensure_default_predictor()
        return self.model_dir.expanduser().resolve()

    def resolved(self) -> ServeConfig:
        """The same config with absolute paths, so that replicas do not depend on their working directory; the
        default predictor is trained here (once, then cached) and replaced by its directory."""
        paths = {"model_dir": self.model_dir_path()}
        if self.token_file is not None:
            paths["token_file"] = self.token_file.expanduser().resolve()
        if self.data_root is not None:
            paths["data_root"] = self.data_root.expanduser().resolve()
        return self.model_copy(update=paths)
