"""Bad data, generated (hypothesis): the loaders and the descriptors either work exactly or fail clearly.

Every dataset file the loaders are fed is valid (and must load to exactly the expected prompt/response pairs),
has one broken record (and must raise a :class:`DatasetError` naming the file and that record's index or line),
or is corrupted at the byte level (and must load to well-formed pairs or raise a DatasetError naming the file).
No other exception type is ever acceptable. Valid tables give descriptors that are all finite and within their
documented ranges; tables of the wrong shape raise ``ValueError``. Prompts over ``max_seq_len`` are cut, counted
and never lose their response. ``python -m pytest tests/descriptors/test_bad_data.py -s`` prints how many inputs of each
kind were tried.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import tuneahead_ray.descriptors.pipeline as pipeline
from tuneahead_ray.data import CHAT_ROLES, DatasetError, load_dataset
from tuneahead_ray.descriptors import RowFeaturizer
from tuneahead_ray.descriptors.model_pass import ModelScorer
from tuneahead_ray.descriptors.pipeline import describe_table
from tuneahead_ray.features import STATIC_FEATURES
from tuneahead_ray.training import encode_pairs

SUFFIXES = (".json", ".jsonl", ".parquet")
LAYOUTS = ("chat", "instruction", "prompt_response")
SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
#: Inputs tried per kind and outcome, printed at the end of the module (run with -s).
TRIED: Counter[str] = Counter()
_names = itertools.count()


@pytest.fixture(scope="module", autouse=True)
def report_counts():
    yield
    print("\nbad-data inputs tried:", json.dumps(dict(sorted(TRIED.items())), indent=1), f"total {TRIED.total()}")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bad_data")


def fresh(workdir: Path, suffix: str) -> Path:
    return workdir / f"d{next(_names)}{suffix}"


# ------------------------------------------------------------------------------------------ generators

texts = st.text(max_size=40)  # any Unicode but surrogates, control characters included
answers = texts.filter(lambda text: text.strip() != "")
non_strings = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@st.composite
def valid_record(draw, layout: str) -> tuple[dict, tuple[str, str]]:
    """One record of ``layout`` and the (prompt, response) pair it must load as."""
    prompt, response = draw(texts), draw(answers)
    if layout == "chat":
        system = draw(st.none() | texts)
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
        if system is None:
            return {"messages": messages}, (prompt, response)
        return {"messages": [{"role": "system", "content": system}, *messages]}, (f"{system}\n\n{prompt}", response)
    if layout == "instruction":
        extra = draw(st.none() | texts)  # always present: Parquet infers its columns from the first record
        return {"instruction": prompt, "input": extra, "output": response}, (
            f"{prompt}\n\n{extra}" if extra else prompt,
            response,
        )
    return {"prompt": prompt, "response": response}, (prompt, response)


@st.composite
def valid_dataset(draw) -> tuple[str, list[dict], list[tuple[str, str]]]:
    layout = draw(st.sampled_from(LAYOUTS))
    pairs = draw(st.lists(valid_record(layout), min_size=1, max_size=6))
    return layout, [record for record, _ in pairs], [expected for _, expected in pairs]


def _required_paths(layout: str, record: dict) -> list[tuple]:
    """Key paths of the string fields a record of ``layout`` must have."""
    if layout == "chat":
        return [("messages", i, key) for i in range(len(record["messages"])) for key in ("role", "content")]
    return [("instruction",), ("output",)] if layout == "instruction" else [("prompt",), ("response",)]


def _set(record: dict, path: tuple, value: object) -> None:
    target = record
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value


def _delete(record: dict, path: tuple) -> None:
    target = record
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]


MUTATIONS = (
    "not_an_object",
    "missing_field",
    "wrong_type",
    "blank_response",
    "bad_role",
    "no_assistant",
    "messages_not_a_list",
    "lone_surrogate",
)


@st.composite
def broken_dataset(draw) -> tuple[str, str, list[dict], int]:
    """A valid dataset with exactly one record broken; returns (mutation, layout, records, broken index)."""
    layout, records, _ = draw(valid_dataset())
    records = copy.deepcopy(records)
    index = draw(st.integers(0, len(records) - 1))
    record = records[index]
    choices = [m for m in MUTATIONS if layout == "chat" or m not in ("bad_role", "no_assistant", "messages_not_a_list")]
    mutation = draw(st.sampled_from(choices))
    paths = _required_paths(layout, record)
    if mutation == "not_an_object":
        records[index] = draw(st.one_of(st.none(), st.integers(), st.text(max_size=5), st.lists(st.integers())))
    elif mutation == "missing_field":
        _delete(record, draw(st.sampled_from(paths)))
    elif mutation == "wrong_type":
        _set(record, draw(st.sampled_from(paths)), draw(non_strings))
    elif mutation == "blank_response":
        path = paths[-1] if layout == "chat" else paths[1]
        _set(record, path, draw(st.sampled_from(["", " ", "\n\t ", "\u3000"])))
    elif mutation == "bad_role":
        role = draw(st.text(max_size=8).filter(lambda r: r not in CHAT_ROLES))
        _set(record, ("messages", draw(st.sampled_from(range(len(record["messages"])))), "role"), role)
    elif mutation == "no_assistant":
        record["messages"] = [m for m in record["messages"] if m["role"] != "assistant"]
    elif mutation == "messages_not_a_list":
        record["messages"] = draw(st.one_of(st.text(max_size=5), st.integers(), st.dictionaries(texts, texts)))
    else:  # a JSON escape that spells half a UTF-16 pair: valid JSON, not valid Unicode
        path = draw(st.sampled_from(paths))
        _set(record, path, draw(texts) + draw(st.sampled_from(["\ud800", "\udfff", "\udbff"])))
    return mutation, layout, records, index


def write_records(records: list, suffix: str, path: Path, *, ascii_only: bool = True) -> Path:
    """Write records as a JSON array, JSONL or Parquet (falling back to JSONL where Parquet cannot hold them)."""
    if suffix == ".parquet":
        try:
            table = pa.Table.from_pylist(records)
            pq.write_table(table, path)
            return path
        except Exception:  # noqa: BLE001 - pyarrow raises many types for records it cannot hold
            path = path.with_suffix(".jsonl")  # mixed types, non-objects, surrogates: not representable
            suffix = ".jsonl"
    if suffix == ".json":
        path.write_text(json.dumps(records, ensure_ascii=ascii_only), encoding="utf-8", errors="surrogatepass")
    else:
        lines = [json.dumps(record, ensure_ascii=ascii_only) for record in records]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogatepass")
    return path


def check_located(err: DatasetError, path: Path, index: int) -> None:
    """The error names the file and the broken record: 0-based record (JSON array, Parquet) or 1-based line."""
    message = str(err)
    assert str(path) in message
    if path.suffix == ".jsonl":
        assert (err.line, err.record) == (index + 1, None), message
        assert f"line {index + 1}:" in message
    else:
        assert (err.record, err.line) == (index, None), message
        assert f"record {index}:" in message


def check_table(table: pa.Table) -> None:
    """What every successfully loaded dataset is: two non-null string columns, a non-blank response per row."""
    assert table.column_names == ["prompt", "response"]
    assert [field.type for field in table.schema] == [pa.string(), pa.string()]
    assert table.num_rows >= 1 and [c.null_count for c in table.columns] == [0, 0]
    assert all(response.strip() for response in table.column("response").to_pylist())


def load_or_error(path: Path, kind: str) -> pa.Table | DatasetError:
    """Load ``path``; only a table or a DatasetError naming the file is acceptable (anything else propagates)."""
    try:
        table = load_dataset(path)
    except DatasetError as err:
        assert str(path) in str(err)
        TRIED[f"{kind}: DatasetError"] += 1
        return err
    check_table(table)
    TRIED[f"{kind}: loaded"] += 1
    return table


# --------------------------------------------------------------------------------------------- loaders


@SETTINGS
@given(dataset=valid_dataset(), suffix=st.sampled_from(SUFFIXES), ascii_only=st.booleans())
def test_valid_files_load_exactly(workdir, dataset, suffix, ascii_only) -> None:
    _, records, expected = dataset
    path = write_records(records, suffix, fresh(workdir, suffix), ascii_only=ascii_only)
    table = load_dataset(path)
    check_table(table)
    assert list(zip(table.column("prompt").to_pylist(), table.column("response").to_pylist(), strict=True)) == expected
    TRIED[f"valid {path.suffix}: loaded exactly"] += 1


@settings(SETTINGS, max_examples=250)
@given(broken=broken_dataset(), suffix=st.sampled_from(SUFFIXES))
def test_one_broken_record_is_a_located_error(workdir, broken, suffix) -> None:
    mutation, _, records, index = broken
    path = write_records(records, suffix, fresh(workdir, suffix))
    with pytest.raises(DatasetError) as caught:
        load_dataset(path)
    check_located(caught.value, path, index)
    TRIED[f"broken record ({mutation}) {path.suffix}: located DatasetError"] += 1


@st.composite
def corrupted_bytes(draw) -> tuple[str, str, bytes]:
    """A valid file's bytes truncated, overwritten, spliced with random (often non-UTF-8) bytes, or pure noise."""
    suffix = draw(st.sampled_from(SUFFIXES))
    _, records, _ = draw(valid_dataset())
    scratch = Path(f"/dev/shm/tuneahead-bad-data-{next(_names)}{suffix}")
    if not scratch.parent.is_dir():
        scratch = Path(f"/tmp/tuneahead-bad-data-{next(_names)}{suffix}")
    written = write_records(records, suffix, scratch, ascii_only=draw(st.booleans()))
    data = written.read_bytes()
    written.unlink()
    at = draw(st.integers(0, len(data)))
    junk = draw(st.binary(min_size=1, max_size=16))
    how = draw(st.sampled_from(["truncate", "insert", "overwrite", "bom", "noise", "empty", "whitespace"]))
    if how == "truncate":
        data = data[:at]
    elif how == "insert":
        data = data[:at] + junk + data[at:]
    elif how == "overwrite":
        data = data[:at] + junk + data[at + len(junk) :]
    elif how == "bom":
        data = b"\xef\xbb\xbf" + data
    elif how == "noise":
        data = draw(st.binary(max_size=200))
    elif how == "empty":
        data = b""
    else:
        data = b" \n\n\t\n"
    return f"{how} {suffix}", suffix, data


@settings(SETTINGS, max_examples=250)
@example(case=("deep nesting .json", ".json", b"[" * 100_000 + b"]" * 100_000))
@example(case=("deep nesting .jsonl", ".jsonl", b'{"prompt": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n"))
@example(case=("5000-digit int .jsonl", ".jsonl", b'{"prompt": ' + b"9" * 5000 + b', "response": "r"}\n'))
@example(case=("invalid UTF-8 .jsonl", ".jsonl", b'{"prompt": "\xff\xfe", "response": "r"}\n'))
@example(case=("NaN literal .jsonl", ".jsonl", b'{"prompt": NaN, "response": "r"}\n'))
@given(case=corrupted_bytes())
def test_corrupted_bytes_load_or_fail_clearly(workdir, case) -> None:
    kind, suffix, data = case
    path = fresh(workdir, suffix)
    path.write_bytes(data)
    load_or_error(path, f"corrupted bytes ({kind.rsplit(' ', 1)[0]}) {suffix}")


def test_invalid_utf8_inside_a_parquet_string_column_names_the_record(workdir) -> None:
    offsets = pa.py_buffer(pa.array([0, 1, 3], pa.int32()).buffers()[1])
    bad = pa.Array.from_buffers(pa.string(), 2, [None, offsets, pa.py_buffer(b"a\xff\xfe")])
    path = fresh(workdir, ".parquet")
    pq.write_table(pa.table({"prompt": bad, "response": ["x", "y"]}), path)
    with pytest.raises(DatasetError) as caught:
        load_dataset(path)
    check_located(caught.value, path, 1)
    assert "invalid UTF-8" in str(caught.value)
    TRIED["invalid UTF-8 in Parquet: located DatasetError"] += 1


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_empty_datasets_are_an_error_not_an_empty_table(workdir, suffix) -> None:
    path = fresh(workdir, suffix)
    if suffix == ".parquet":
        pq.write_table(pa.table({"prompt": pa.array([], pa.string()), "response": pa.array([], pa.string())}), path)
    else:
        path.write_text("[]" if suffix == ".json" else "\n\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="no records"):
        load_dataset(path)
    TRIED[f"empty {suffix}: DatasetError"] += 1


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_huge_records_load_intact(workdir, suffix) -> None:
    prompt = "é" * (4 << 20)  # 8 MB of UTF-8 in one field
    records = [{"prompt": prompt, "response": "r"}, {"prompt": "p", "response": "ü" * (1 << 20)}]
    table = load_dataset(write_records(records, suffix, fresh(workdir, suffix), ascii_only=False))
    assert table.column("prompt").to_pylist() == [prompt, "p"]
    assert table.column("response").to_pylist() == ["r", "ü" * (1 << 20)]
    TRIED[f"huge records {suffix}: loaded exactly"] += 1


# ------------------------------------------------------------------------------------- max_seq_len


@settings(SETTINGS, max_examples=40)
@given(
    prompts=st.lists(st.text(max_size=20) | st.text(min_size=60, max_size=300), min_size=1, max_size=8),
    max_seq_len=st.integers(24, 96),
    data=st.data(),
)
def test_prompts_over_max_seq_len_are_cut_counted_and_keep_their_response(tokenizer, prompts, max_seq_len, data):
    responses = [data.draw(st.text(alphabet="abc 123", min_size=1, max_size=6)) for _ in prompts]
    whole = encode_pairs(tokenizer, prompts, responses, 1 << 30)
    cut = encode_pairs(tokenizer, prompts, responses, max_seq_len)
    over = [len(ids) > max_seq_len for ids in whole.input_ids]
    assert cut.truncated == sum(over)
    for i, too_long in enumerate(over):
        assert len(cut.input_ids[i]) <= max_seq_len
        response = whole.input_ids[i][whole.response_start[i] : whole.response_end[i]]
        kept = cut.input_ids[i][cut.response_start[i] : cut.response_end[i]]
        assert kept.tolist() == response.tolist()  # the answer survives whole; the prompt is cut from the left
        if not too_long:
            assert cut.input_ids[i].tolist() == whole.input_ids[i].tolist()
    TRIED["prompts vs max_seq_len: rows encoded"] += len(prompts)
    TRIED["prompts vs max_seq_len: rows cut and counted"] += sum(over)


# ----------------------------------------------------------------------------------------- descriptors


@pytest.fixture(scope="module")
def shared_models():
    """describe_table builds its featurizer and scorer per call; share one of each so examples take milliseconds."""
    featurizer, scorer = RowFeaturizer("default"), ModelScorer("default", device="cpu")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pipeline, "RowFeaturizer", lambda model: featurizer)
        patch.setattr(pipeline, "ModelScorer", lambda model, device: scorer)
        yield


UNIT_INTERVAL = (
    "special_char_ratio",
    "type_token_ratio",
    "ngram_repetition",
    "instruction_complexity",
    "groundedness",
    "exact_duplicate_rate",
    "near_duplicate_rate",
    "conflicting_response_rate",
    "embedding_outlier_ratio",
)
NON_NEGATIVE = ("io_length_ratio", "prompt_words_mean", "reference_log_perplexity")


def check_descriptors(values: dict[str, float], rows: int) -> None:
    """Documented ranges: all finite; shares in [0, 1]; lengths, ratios and perplexity >= 0; cosine in [-1, 1]."""
    assert list(values) == list(STATIC_FEATURES)
    assert all(math.isfinite(v) for v in values.values()), {k: v for k, v in values.items() if not math.isfinite(v)}
    assert values["num_rows"] == rows
    for part in ("prompt", "response", "total"):
        stats = [values[f"{part}_tokens_{s}"] for s in ("p10", "p50", "p90")]
        assert 0 <= stats[0] <= stats[1] <= stats[2] and values[f"{part}_tokens_std"] >= 0
    for name in UNIT_INTERVAL:
        assert 0.0 <= values[name] <= 1.0, (name, values[name])
    for name in NON_NEGATIVE:
        assert values[name] >= 0.0, (name, values[name])
    assert -1.0 - 1e-6 <= values["io_similarity"] <= 1.0 + 1e-6


long_texts = st.one_of(texts, st.text(min_size=520, max_size=900))  # past the scorer's 512-token window


@settings(SETTINGS, max_examples=12)
@given(prompts=st.lists(long_texts, min_size=1, max_size=4), data=st.data())
def test_descriptors_of_valid_tables_are_finite_and_in_range(shared_models, prompts, data) -> None:
    responses = [data.draw(long_texts.filter(lambda t: t.strip())) for _ in prompts]
    table = pa.table({"prompt": prompts, "response": responses})
    check_descriptors(describe_table(table, use_ray=False, sample_size=8), len(prompts))
    doubled = pa.concat_tables([table, table])  # every row twice: at least half of the rows are exact copies
    values = describe_table(doubled, use_ray=False, sample_size=8)
    check_descriptors(values, 2 * len(prompts))
    distinct = len(set(zip(prompts, responses, strict=True)))
    assert values["exact_duplicate_rate"] == pytest.approx(1 - distinct / (2 * len(prompts)))
    TRIED["descriptor tables: finite, in range"] += 2


BAD_TABLES = {
    "int prompts": pa.table({"prompt": [1, 2], "response": ["a", "b"]}),
    "binary prompts": pa.table({"prompt": [b"a", b"\xff"], "response": ["a", "b"]}),
    "list responses": pa.table({"prompt": ["a", "b"], "response": [["a"], ["b"]]}),
    "dictionary-encoded": pa.table({"prompt": pa.array(["a", "b"]).dictionary_encode(), "response": ["a", "b"]}),
    "missing response": pa.table({"prompt": ["a"]}),
    "no rows": pa.table({"prompt": pa.array([], pa.string()), "response": pa.array([], pa.string())}),
}


@pytest.mark.parametrize("name", BAD_TABLES)
def test_descriptors_reject_tables_of_the_wrong_shape(shared_models, name) -> None:
    with pytest.raises(ValueError, match="prompt|empty") as caught:
        describe_table(BAD_TABLES[name], use_ray=False)
    assert type(caught.value) is ValueError
    TRIED["descriptor tables of the wrong shape: ValueError"] += 1


def test_descriptors_read_nulls_as_empty_text(shared_models) -> None:
    table = pa.table({"prompt": [None, "what is 2+2?"], "response": ["4", None]})
    as_empty = pa.table({"prompt": ["", "what is 2+2?"], "response": ["4", ""]})
    assert describe_table(table, use_ray=False) == describe_table(as_empty, use_ray=False)
    TRIED["descriptor tables with nulls: read as empty text"] += 1
