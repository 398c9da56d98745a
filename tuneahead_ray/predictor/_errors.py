"""The exceptions of the predictor: bad metadataset input and a model directory that cannot be trusted."""

from __future__ import annotations

__all__ = ["MetadatasetError", "ModelStoreError"]


class MetadatasetError(ValueError):
    """Bad metadataset input; the message names the file and, where known, the column."""


class ModelStoreError(ValueError):
    """A saved model that is missing, unreadable, of an unknown card version, or tampered with; names the file."""
