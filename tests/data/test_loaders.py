"""Dataset loaders: every file type and record layout; every kind of bad input is a located DatasetError."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tuneahead_ray.data import DatasetError, load_dataset, load_records, write_jsonl
from tuneahead_ray.schemas import DatasetRef

SHARED_INSTRUCT = Path(__file__).resolve().parents[3] / "shared" / "data" / "instruct"


def _chat(user: str, assistant: str) -> dict:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]}


def _write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _rows(table: pa.Table) -> list[tuple[str, str]]:
    return list(zip(table.column("prompt").to_pylist(), table.column("response").to_pylist(), strict=True))


def _expect_error(
    path: Path, *, line: int | None = None, record: int | None = None, contains: tuple[str, ...] = (), **kw
) -> DatasetError:
    """Load ``path``, expect a DatasetError at the given position, and check the message mentions it all."""
    with pytest.raises(DatasetError) as info:
        load_dataset(path, **kw)
    err = info.value
    message = str(err)
    assert path.name in message
    assert (err.line, err.record) == (line, record), message
    if line is not None:
        assert f"line {line}:" in message
    if record is not None:
        assert f"record {record}" in message
    for fragment in contains:
        assert fragment in message
    return err


# ----------------------------------------------------------------------------------------- loading works


def test_json_array_chat(tmp_path: Path) -> None:
    records = [
        _chat("What is 2+2?", "4"),
        {
            "messages": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Capital of France?"},
                {"role": "assistant", "content": "Paris."},
            ]
        },
    ]
    table = load_dataset(_write_json(tmp_path / "chat.json", records))
    assert table.column_names == ["prompt", "response"]
    assert table.schema.field("prompt").type == pa.string()
    assert table.schema.field("response").type == pa.string()
    assert [c.null_count for c in table.columns] == [0, 0]
    assert _rows(table) == [
        ("What is 2+2?", "4"),
        # System first, then user turns; earlier assistant turns are dropped; the last one is the answer.
        ("Be brief.\n\nHi\n\nCapital of France?", "Paris."),
    ]


def test_jsonl_instruction(tmp_path: Path) -> None:
    path = _write_lines(
        tmp_path / "inst.jsonl",
        [
            json.dumps({"instruction": "Translate", "input": "chat", "output": "cat"}),
            "",
            "   ",
            json.dumps({"instruction": "Say hi", "input": "", "output": "hi"}),
            json.dumps({"instruction": "Count", "output": "1 2 3"}),
            json.dumps({"instruction": "Nil", "input": None, "output": "x", "extra": 7}),
        ],
    )
    assert _rows(load_dataset(path)) == [
        ("Translate\n\nchat", "cat"),
        ("Say hi", "hi"),
        ("Count", "1 2 3"),
        ("Nil", "x"),
    ]
    assert _rows(load_dataset(path, format="instruction")) == _rows(load_dataset(path))


def test_ndjson_and_uppercase_suffix(tmp_path: Path) -> None:
    line = json.dumps({"instruction": "a", "output": "b"})
    assert _rows(load_dataset(_write_lines(tmp_path / "d.ndjson", [line]))) == [("a", "b")]
    assert _rows(load_dataset(_write_lines(tmp_path / "d.JSONL", [line]))) == [("a", "b")]


def test_utf8_bom_and_non_ascii(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(_chat("背景: \u2028 ok", "答案"), ensure_ascii=False).encode())
    assert _rows(load_dataset(path)) == [("背景: \u2028 ok", "答案")]


def test_parquet_chat_layout(tmp_path: Path) -> None:
    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    table = pa.table(
        {
            "messages": pa.array(
                [
                    [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1"}],
                    [
                        {"role": "system", "content": "S"},
                        {"role": "user", "content": "Q2"},
                        {"role": "assistant", "content": "A2"},
                    ],
                ],
                pa.list_(message),
            )
        }
    )
    pq.write_table(table, tmp_path / "chat.parquet")
    assert _rows(load_dataset(tmp_path / "chat.parquet")) == [("Q1", "A1"), ("S\n\nQ2", "A2")]
    assert _rows(load_dataset(tmp_path / "chat.parquet", format="chat")) == [("Q1", "A1"), ("S\n\nQ2", "A2")]


def test_parquet_instruction_layout(tmp_path: Path) -> None:
    table = pa.table({"instruction": ["I1", "I2"], "input": ["ctx", None], "output": ["O1", "O2"]})
    pq.write_table(table, tmp_path / "inst.parquet")
    assert _rows(load_dataset(tmp_path / "inst.parquet")) == [("I1\n\nctx", "O1"), ("I2", "O2")]


def test_parquet_without_input_column(tmp_path: Path) -> None:
    pq.write_table(pa.table({"instruction": ["I"], "output": ["O"]}), tmp_path / "inst.parquet")
    assert _rows(load_dataset(tmp_path / "inst.parquet", format="instruction")) == [("I", "O")]


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".parquet"])
def test_prompt_response_layout(tmp_path: Path, suffix: str) -> None:
    records = [{"prompt": "p1", "response": "r1"}, {"prompt": "", "response": "r2"}]
    path = tmp_path / f"pr{suffix}"
    if suffix == ".json":
        _write_json(path, records)
    elif suffix == ".jsonl":
        _write_lines(path, [json.dumps(r) for r in records])
    else:
        pq.write_table(pa.Table.from_pylist(records), path)
    assert _rows(load_dataset(path)) == [("p1", "r1"), ("", "r2")]
    assert load_records(path) == records


def test_dataset_ref_source_and_format(tmp_path: Path) -> None:
    path = _write_json(tmp_path / "d.json", [_chat("q", "a")])
    assert _rows(load_dataset(DatasetRef(path=path))) == [("q", "a")]
    assert _rows(load_dataset(str(path), format="chat")) == [("q", "a")]
    # The ref's own format applies when the call says "auto".
    with pytest.raises(DatasetError, match="missing field 'instruction'"):
        load_dataset(DatasetRef(path=path, format="instruction"))


def test_load_records_matches_table(tmp_path: Path) -> None:
    path = _write_json(tmp_path / "d.json", [_chat("q1", "a1"), _chat("q2", "a2")])
    assert load_records(path) == [{"prompt": "q1", "response": "a1"}, {"prompt": "q2", "response": "a2"}]


def test_bad_format_argument_is_a_plain_value_error(tmp_path: Path) -> None:
    path = _write_json(tmp_path / "d.json", [_chat("q", "a")])
    with pytest.raises(ValueError, match="format must be one of") as info:
        load_dataset(path, format="alpaca")  # type: ignore[arg-type]
    assert not isinstance(info.value, DatasetError)


def test_real_dataset_loads() -> None:
    path = SHARED_INSTRUCT / "dolly_alpaca_mix_a.json"
    if not path.is_file():
        pytest.skip(f"shared dataset not present at {path}")
    table = load_dataset(path)
    assert table.num_rows == 3000
    assert table.column_names == ["prompt", "response"]
    assert [c.null_count for c in table.columns] == [0, 0]
    assert all(r.strip() for r in table.column("response").to_pylist())


# ------------------------------------------------------------------------------------------------- write


def test_write_jsonl_round_trip(tmp_path: Path) -> None:
    records = [{"prompt": "a\nb", "response": "ü"}, {"prompt": "c", "response": "d"}]
    path = write_jsonl(iter(records), tmp_path / "out.jsonl")
    assert path == tmp_path / "out.jsonl"
    assert path.read_text(encoding="utf-8").count("\n") == 2
    assert load_records(path) == records
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]  # no temp file left behind


def test_write_jsonl_failure_keeps_old_file(tmp_path: Path) -> None:
    path = write_jsonl([{"prompt": "old", "response": "old"}], tmp_path / "out.jsonl")
    before = path.read_bytes()
    with pytest.raises(TypeError, match="record 1"):
        write_jsonl([{"prompt": "new", "response": "new"}, ["not", "a", "dict"]], path)  # type: ignore[list-item]
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(_text, _text.filter(str.strip)), min_size=1, max_size=5))
def test_write_then_load_is_identity(tmp_path_factory: pytest.TempPathFactory, pairs: list) -> None:
    records = [{"prompt": p, "response": r} for p, r in pairs]
    path = write_jsonl(records, tmp_path_factory.mktemp("rt") / "d.jsonl")
    assert load_records(path) == records


# ------------------------------------------------------------------------------------------------ errors


def test_error_format_and_attributes() -> None:
    err = DatasetError("data.jsonl", "expected a JSON object, got list", line=3)
    assert str(err) == "data.jsonl, line 3: expected a JSON object, got list"
    assert (err.path, err.line, err.record, err.message) == (
        Path("data.jsonl"),
        3,
        None,
        "expected a JSON object, got list",
    )
    assert str(DatasetError("data.json", "missing field 'output'", record=12)) == (
        "data.json, record 12: missing field 'output'"
    )
    assert str(DatasetError("d.parquet", "no records")) == "d.parquet: no records"
    assert isinstance(err, ValueError)
    clone = copy.deepcopy(err)
    assert (str(clone), clone.line, clone.record, clone.path) == (str(err), 3, None, err.path)


def test_unknown_suffix(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("prompt,response\na,b\n")
    _expect_error(path, contains=(".csv", ".json", ".jsonl", ".ndjson", ".parquet"))


def test_missing_file(tmp_path: Path) -> None:
    _expect_error(tmp_path / "nope.json", contains=("not found",))


def test_directory(tmp_path: Path) -> None:
    (tmp_path / "dir.json").mkdir()
    _expect_error(tmp_path / "dir.json", contains=("directory",))


def test_truncated_json(tmp_path: Path) -> None:
    path = tmp_path / "trunc.json"
    path.write_text('[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "c", "outp')
    _expect_error(path, line=3, contains=("invalid JSON",))


def test_invalid_json_token_in_array(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('[\n{"instruction": "a", "output": "b"},\n\n{"instruction": "c", "output": oops}\n]')
    _expect_error(path, line=4, contains=("invalid JSON",))


def test_invalid_jsonl_line(tmp_path: Path) -> None:
    ok = json.dumps({"instruction": "a", "output": "b"})
    path = _write_lines(tmp_path / "bad.jsonl", [ok, "", '{"instruction": "a", "output": ', ok])
    _expect_error(path, line=3, contains=("invalid JSON",))


def test_jsonl_line_not_an_object(tmp_path: Path) -> None:
    ok = json.dumps({"instruction": "a", "output": "b"})
    path = _write_lines(tmp_path / "data.jsonl", [ok, ok, "[1, 2]"])
    err = _expect_error(path, line=3)
    assert str(err) == f"{path}, line 3: expected a JSON object, got list"


def test_json_array_element_not_an_object(tmp_path: Path) -> None:
    path = _write_json(tmp_path / "d.json", [_chat("q", "a"), "just a string"])
    _expect_error(path, record=1, contains=("expected a JSON object, got str",))


def test_json_top_level_not_an_array(tmp_path: Path) -> None:
    path = _write_json(tmp_path / "d.json", {"messages": []})
    _expect_error(path, contains=("expected a JSON array", "got dict"))


def test_missing_output_field(tmp_path: Path) -> None:
    records = [{"instruction": f"i{n}", "output": f"o{n}"} for n in range(12)] + [{"instruction": "x"}]
    path = _write_json(tmp_path / "data.json", records)
    err = _expect_error(path, record=12)
    assert str(err) == f"{path}, record 12: missing field 'output'"


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({"messages": [{"role": "user"}, {"role": "assistant", "content": "a"}]}, "'messages[0].content'"),
        ({"messages": [{"content": "q"}, {"role": "assistant", "content": "a"}]}, "'messages[0].role'"),
        ({"instruction": "i", "input": ""}, "'output'"),
        ({"prompt": "p"}, "'response'"),
        ({"response": "r"}, "'prompt'"),
    ],
)
def test_missing_fields(tmp_path: Path, record: dict, field: str) -> None:
    path = _write_lines(tmp_path / "d.jsonl", [json.dumps(record)])
    _expect_error(path, line=1, contains=("missing field", field))


def test_unrecognised_layout_lists_expected_keys(tmp_path: Path) -> None:
    path = _write_json(tmp_path / "d.json", [{"question": "q", "answer": "a"}])
    _expect_error(path, record=0, contains=("'messages'", "'instruction'", "'prompt'", "'response'", "question"))


def test_explicit_format_must_match_every_record(tmp_path: Path) -> None:
    path = _write_json(tmp_path / "d.json", [{"instruction": "i", "output": "o"}])
    _expect_error(path, record=0, format="chat", contains=("missing field 'messages'",))
    path = _write_json(tmp_path / "c.json", [_chat("q", "a")])
    _expect_error(path, record=0, format="instruction", contains=("missing field 'instruction'",))


def test_auto_format_applies_first_records_layout_to_all(tmp_path: Path) -> None:
    path = _write_json(tmp_path / "mixed.json", [_chat("q", "a"), _chat("q", "a"), {"instruction": "i", "output": "o"}])
    _expect_error(path, record=2, contains=("missing field 'messages'",))


@pytest.mark.parametrize(
    ("record", "contains"),
    [
        (
            {"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "a"}]},
            ("'messages[0].content'", "string", "int"),
        ),
        ({"messages": "user: hi"}, ("'messages'", "list", "str")),
        ({"messages": {"role": "user", "content": "q"}}, ("'messages'", "list", "dict")),
        ({"messages": [["user", "q"]]}, ("'messages[0]'", "object", "list")),
        ({"messages": [{"role": 1, "content": "q"}]}, ("'messages[0].role'", "string", "int")),
        ({"instruction": 3, "output": "o"}, ("'instruction'", "string", "int")),
        ({"instruction": "i", "input": ["x"], "output": "o"}, ("'input'", "string", "list")),
        ({"instruction": "i", "output": None}, ("'output'", "string", "null")),
        ({"prompt": None, "response": "r"}, ("'prompt'", "string", "null")),
        ({"prompt": "p", "response": 1.5}, ("'response'", "string", "float")),
    ],
)
def test_wrong_types(tmp_path: Path, record: dict, contains: tuple[str, ...]) -> None:
    ok = json.dumps(_chat("q", "a") if "messages" in record else {"instruction": "i", "output": "o"})
    if "prompt" in record:
        ok = json.dumps({"prompt": "p", "response": "r"})
    path = _write_lines(tmp_path / "types.jsonl", [ok, json.dumps(record)])
    _expect_error(path, line=2, contains=contains)


def test_unknown_role(tmp_path: Path) -> None:
    bad = {"messages": [{"role": "user", "content": "q"}, {"role": "tool", "content": "{}"}]}
    path = _write_json(tmp_path / "roles.json", [_chat("q", "a"), bad])
    _expect_error(path, record=1, contains=("'messages[1].role'", "'tool'", "assistant"))


@pytest.mark.parametrize(
    ("messages", "contains"),
    [
        ([{"role": "user", "content": "q"}], "no assistant turn"),
        ([], "no assistant turn"),
        ([{"role": "system", "content": "s"}, {"role": "assistant", "content": "a"}], "no user turn"),
        (
            [{"role": "assistant", "content": "a"}, {"role": "user", "content": "late question"}],
            "no user turn",
        ),
    ],
)
def test_chat_needs_user_and_assistant(tmp_path: Path, messages: list, contains: str) -> None:
    path = _write_json(tmp_path / "turns.json", [_chat("q", "a"), _chat("q", "a"), {"messages": messages}])
    _expect_error(path, record=2, contains=(contains, "'messages'"))


@pytest.mark.parametrize(("name", "content"), [("e.json", ""), ("e.json", " \n "), ("e.json", "[]"), ("e.jsonl", "")])
def test_no_records(tmp_path: Path, name: str, content: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    _expect_error(path, contains=("no records",))


def test_jsonl_only_blank_lines(tmp_path: Path) -> None:
    _expect_error(_write_lines(tmp_path / "blank.jsonl", ["", "  ", ""]), contains=("no records",))


def test_parquet_zero_rows(tmp_path: Path) -> None:
    pq.write_table(
        pa.table({"prompt": pa.array([], pa.string()), "response": pa.array([], pa.string())}),
        tmp_path / "z.parquet",
    )
    _expect_error(tmp_path / "z.parquet", contains=("no records",))


def test_non_utf8_jsonl(tmp_path: Path) -> None:
    first = json.dumps({"instruction": "a", "output": "b"}).encode() + b"\n"
    second = b"\n"
    third = b'{"instruction": "caf\xe9", "output": "x"}\n'
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(first + second + third)
    offset = len(first) + len(second) + third.index(b"\xe9")
    _expect_error(path, line=3, contains=("UTF-8", f"byte offset {offset}"))


def test_non_utf8_json(tmp_path: Path) -> None:
    path = tmp_path / "latin1.json"
    data = b'[\n{"instruction": "a", "output": "\xff"}\n]'
    path.write_bytes(data)
    offset = data.index(b"\xff")
    _expect_error(path, line=2, contains=("UTF-8", f"byte offset {offset}"))


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({"instruction": "i", "output": ""}, "'output'"),
        ({"instruction": "i", "output": "  \n"}, "'output'"),
        ({"prompt": "p", "response": ""}, "'response'"),
        (
            {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": ""}]},
            "'messages[1].content'",
        ),
    ],
)
def test_empty_response(tmp_path: Path, record: dict, field: str) -> None:
    path = _write_json(tmp_path / "empty.json", [record])
    _expect_error(path, record=0, contains=("empty", field))


def test_parquet_garbage(tmp_path: Path) -> None:
    path = tmp_path / "junk.parquet"
    path.write_bytes(b"this is not parquet at all\x00\x01\x02")
    _expect_error(path, contains=("Parquet",))


def test_parquet_null_value_names_record(tmp_path: Path) -> None:
    pq.write_table(pa.table({"instruction": ["a", "b", "c"], "output": ["x", "y", None]}), tmp_path / "n.parquet")
    _expect_error(tmp_path / "n.parquet", record=2, contains=("'output'", "null"))


def test_parquet_bad_role_names_record(tmp_path: Path) -> None:
    rows = [
        _chat("q", "a"),
        {"messages": [{"role": "human", "content": "q"}, {"role": "assistant", "content": "a"}]},
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "roles.parquet")
    _expect_error(tmp_path / "roles.parquet", record=1, contains=("'messages[0].role'", "'human'"))
