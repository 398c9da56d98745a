"""Dataset loading: JSON / JSONL / Parquet files in chat or instruction format -> prompt/response table."""

from ._errors import DatasetError
from ._loaders import (
    CHAT_ROLES,
    SUPPORTED_SUFFIXES,
    RawRecord,
    load_dataset,
    load_records,
    read_records,
    write_jsonl,
)

__all__ = [
    "CHAT_ROLES",
    "SUPPORTED_SUFFIXES",
    "DatasetError",
    "RawRecord",
    "load_dataset",
    "load_records",
    "read_records",
    "write_jsonl",
]
