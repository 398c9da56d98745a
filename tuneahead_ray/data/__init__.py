"""Dataset loading: JSON / JSONL / Parquet files in chat or instruction format -> prompt/response table."""

from ._errors import DatasetError
from ._loaders import CHAT_ROLES, SUPPORTED_SUFFIXES, load_dataset, load_records, write_jsonl

__all__ = [
    "CHAT_ROLES",
    "SUPPORTED_SUFFIXES",
    "DatasetError",
    "load_dataset",
    "load_records",
    "write_jsonl",
]
