"""Read chat / instruction datasets (JSON, JSONL, Parquet) into a two-column prompt/response table.

Every problem with the input raises :class:`DatasetError` naming the file and the record index (JSON array,
Parquet: 0-based) or line number (JSONL: 1-based), so a bad dataset fails at load time, not inside training.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from .._private.atomic import write_text_atomic
from ..schemas import DatasetRef
from ._errors import DatasetError

__all__ = [
    "CHAT_ROLES",
    "SUPPORTED_SUFFIXES",
    "RawRecord",
    "load_dataset",
    "load_records",
    "read_records",
    "write_jsonl",
]

Format = Literal["auto", "chat", "instruction"]
Source = DatasetRef | str | os.PathLike[str]

#: File suffixes that can be loaded (matched case-insensitively).
SUPPORTED_SUFFIXES: tuple[str, ...] = (".json", ".jsonl", ".ndjson", ".parquet")
#: Roles a chat message may have.
CHAT_ROLES: tuple[str, ...] = ("system", "user", "assistant")
_FORMATS: tuple[str, ...] = ("auto", "chat", "instruction")


@dataclass(frozen=True)
class RawRecord:
    """One decoded but unvalidated record and where it came from (``line`` for JSONL, ``record`` otherwise)."""

    value: object
    line: int | None = None
    record: int | None = None


class _Invalid(Exception):
    """A problem inside one record; the caller adds the file and position."""


# --------------------------------------------------------------------------------------------- public API


def load_dataset(source: Source, format: Format = "auto", group_field: str | None = None) -> pa.Table:
    """Load a dataset file into a table with string columns ``prompt`` and ``response``, one row per record.

    ``format="auto"`` detects the layout from the first record (``messages`` -> chat, ``instruction`` ->
    instruction, ``prompt``/``response`` -> already split). A :class:`DatasetRef` supplies its own format
    when ``format`` is ``"auto"``. ``group_field`` adds a ``group`` column: that field of each record as text
    (null where a record has none).
    """
    prompts, responses, groups = _load_pairs(source, format, group_field)
    columns = {"prompt": pa.array(prompts, pa.string()), "response": pa.array(responses, pa.string())}
    if group_field is not None:
        columns["group"] = pa.array(groups, pa.string())
    return pa.table(columns)


def read_records(path: str | os.PathLike[str]) -> list[RawRecord]:
    """Every record of a JSON array, JSONL or Parquet file, decoded but not validated, with its position (for
    formats of our own, such as benchmark items). Raises :class:`DatasetError` naming the file and position."""
    return _read(_resolve(Path(path), "auto")[0])


def load_records(source: Source, format: Format = "auto") -> list[dict[str, str]]:
    """Like :func:`load_dataset`, but return ``[{"prompt": ..., "response": ...}, ...]``."""
    prompts, responses, _ = _load_pairs(source, format)
    return [{"prompt": p, "response": r} for p, r in zip(prompts, responses, strict=True)]


def write_jsonl(records: Iterable[Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Write one JSON object per line, atomically."""
    lines = []
    for index, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise TypeError(f"record {index} must be a mapping, got {_kind(record)}")
        lines.append(json.dumps(dict(record), ensure_ascii=False) + "\n")
    target = write_text_atomic("".join(lines), path)
    return target


# ------------------------------------------------------------------------------------------------ loading


def _load_pairs(
    source: Source, format: Format, group_field: str | None = None
) -> tuple[list[str], list[str], list[str | None]]:
    path, format = _resolve(source, format)
    rows = _read(path)
    layout: str | None = None if format == "auto" else format
    prompts: list[str] = []
    responses: list[str] = []
    groups: list[str | None] = []
    for raw in rows:
        try:
            if not isinstance(raw.value, dict):
                raise _Invalid(f"expected a JSON object, got {_kind(raw.value)}")
            layout = layout or _detect_layout(raw.value)
            prompt, response = _PARSERS[layout](raw.value)
        except _Invalid as err:
            raise DatasetError(path, str(err), line=raw.line, record=raw.record) from None
        prompts.append(prompt)
        responses.append(response)
        group = raw.value.get(group_field) if group_field is not None else None
        groups.append(None if group is None else str(group))
    return prompts, responses, groups


def _read(path: Path) -> list[RawRecord]:
    """The records of a checked file (see :func:`_resolve`); none at all is an error naming it."""
    rows = _READERS[path.suffix.lower()](path)
    if not rows:
        raise DatasetError(path, "no records")
    return rows


def _resolve(source: Source, format: str) -> tuple[Path, str]:
    """Return the file path and effective format, checking that the file exists and has a known suffix."""
    if format not in _FORMATS:
        raise ValueError(f"format must be one of {list(_FORMATS)}, got {format!r}")
    if isinstance(source, DatasetRef):
        path, format = source.path, (source.format if format == "auto" else format)
    else:
        path = Path(source)
    if not path.exists():
        raise DatasetError(path, "file not found")
    if path.is_dir():
        raise DatasetError(path, "is a directory, expected a dataset file")
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise DatasetError(path, f"unsupported file type {path.suffix!r}; supported: {', '.join(SUPPORTED_SUFFIXES)}")
    return path, format


# ------------------------------------------------------------------------------------------------ readers


def _read_text(path: Path) -> str:
    """Decode the file as strict UTF-8 (a leading BOM is dropped)."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DatasetError(path, f"cannot read file: {err.strerror or err}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise DatasetError(path, f"invalid UTF-8 at byte offset {err.start}", line=line) from None
    return text.removeprefix("\ufeff")


def _invalid_json(path: Path, err: json.JSONDecodeError, line: int) -> DatasetError:
    return DatasetError(path, f"invalid JSON: {err.msg} (column {err.colno})", line=line)


def _parse_json(path: Path, text: str, line: int | None = None) -> object:
    """``json.loads`` with every parse failure as a located :class:`DatasetError`: syntax errors, nesting deeper
    than Python's recursion limit, and integers longer than Python converts (4,300 digits)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise _invalid_json(path, err, err.lineno if line is None else line) from None
    except RecursionError:
        raise DatasetError(path, "invalid JSON: nested too deeply", line=line) from None
    except ValueError as err:  # int() refuses integer literals over sys.get_int_max_str_digits() digits
        raise DatasetError(path, f"invalid JSON: {err}", line=line) from None


def _read_json_array(path: Path) -> list[RawRecord]:
    text = _read_text(path)
    if not text.strip():
        return []
    data = _parse_json(path, text)
    if not isinstance(data, list):
        raise DatasetError(path, f"expected a JSON array of objects, got {_kind(data)}")
    return [RawRecord(value, record=index) for index, value in enumerate(data)]


def _read_jsonl(path: Path) -> list[RawRecord]:
    rows = []
    # Split on "\n" only: str.splitlines would also split on U+2028 etc. and shift the line numbers.
    for number, line in enumerate(_read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        rows.append(RawRecord(_parse_json(path, line, number), line=number))
    return rows


def _read_parquet(path: Path) -> list[RawRecord]:
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        raise DatasetError(path, f"not a readable Parquet file ({err})") from None
    try:
        records = table.to_pylist()
    except UnicodeDecodeError as err:
        raise DatasetError(
            path, f"invalid UTF-8 in a string column: {err.reason}", record=_bad_utf8_record(table)
        ) from None
    return [RawRecord(value, record=index) for index, value in enumerate(records)]


def _bad_utf8_record(table: pa.Table) -> int | None:
    """The first record whose strings are not valid UTF-8 (only searched once decoding the table failed)."""
    for index in range(table.num_rows):
        try:
            table.slice(index, 1).to_pylist()
        except UnicodeDecodeError:
            return index
    return None


_READERS: dict[str, Callable[[Path], list[RawRecord]]] = {
    ".json": _read_json_array,
    ".jsonl": _read_jsonl,
    ".ndjson": _read_jsonl,
    ".parquet": _read_parquet,
}


# ------------------------------------------------------------------------------------------ record layouts


def _detect_layout(record: dict[str, Any]) -> str:
    if "messages" in record:
        return "chat"
    if "instruction" in record:
        return "instruction"
    if "prompt" in record or "response" in record:
        return "prompt_response"
    raise _Invalid(
        "cannot detect the record format: expected key 'messages' (chat), 'instruction' (with 'output'), "
        f"or 'prompt' and 'response'; got keys {sorted(record)}"
    )


def _chat_pair(record: dict[str, Any]) -> tuple[str, str]:
    """System and user turns before the last assistant turn form the prompt; that turn is the response."""
    messages = _require(record, "messages")
    if not isinstance(messages, list):
        raise _Invalid(f"field 'messages' must be a list, got {_kind(messages)}")
    turns: list[tuple[str, str]] = []
    for index, message in enumerate(messages):
        name = f"messages[{index}]"
        if not isinstance(message, dict):
            raise _Invalid(f"field {name!r} must be an object, got {_kind(message)}")
        role = _string(_require(message, "role", f"{name}.role"), f"{name}.role")
        if role not in CHAT_ROLES:
            raise _Invalid(f"field '{name}.role' must be one of {list(CHAT_ROLES)}, got {role!r}")
        turns.append((role, _string(_require(message, "content", f"{name}.content"), f"{name}.content")))
    last = max((i for i, (role, _) in enumerate(turns) if role == "assistant"), default=None)
    if last is None:
        raise _Invalid("field 'messages' has no assistant turn")
    before = turns[:last]
    users = [content for role, content in before if role == "user"]
    if not users:
        raise _Invalid("field 'messages' has no user turn before the last assistant turn")
    systems = [content for role, content in before if role == "system"]
    return "\n\n".join(systems + users), _non_empty(turns[last][1], f"messages[{last}].content")


def _instruction_pair(record: dict[str, Any]) -> tuple[str, str]:
    instruction = _string(_require(record, "instruction"), "instruction")
    extra = record.get("input")
    extra = "" if extra is None else _string(extra, "input")
    output = _non_empty(_string(_require(record, "output"), "output"), "output")
    return (f"{instruction}\n\n{extra}" if extra else instruction), output


def _prompt_response_pair(record: dict[str, Any]) -> tuple[str, str]:
    prompt = _string(_require(record, "prompt"), "prompt")
    return prompt, _non_empty(_string(_require(record, "response"), "response"), "response")


_PARSERS: dict[str, Callable[[dict[str, Any]], tuple[str, str]]] = {
    "chat": _chat_pair,
    "instruction": _instruction_pair,
    "prompt_response": _prompt_response_pair,
}


# ---------------------------------------------------------------------------------------- field helpers


def _require(mapping: dict[str, Any], key: str, name: str | None = None) -> object:
    if key not in mapping:
        raise _Invalid(f"missing field {name or key!r}")
    return mapping[key]


def _string(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"field {name!r} must be a string, got {_kind(value)}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:  # JSON escapes can spell lone surrogates ("\\ud800"), which no file can store
        raise _Invalid(f"field {name!r} is not valid Unicode: unpaired surrogate at character {err.start}") from None
    return value


def _non_empty(value: str, name: str) -> str:
    if not value.strip():
        raise _Invalid(f"field {name!r} is an empty response")
    return value


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__
