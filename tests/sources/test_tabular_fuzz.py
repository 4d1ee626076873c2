"""Whatever bytes a file holds, the tabular reader returns runs or raises InputError."""

from __future__ import annotations

import itertools
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lossdoctor.errors import InputError
from lossdoctor.run import Run, Series
from lossdoctor.sources.tabular import looks_like_jsonl, looks_like_table, read_table_file

FUZZ = settings(
    max_examples=150,
    deadline=timedelta(milliseconds=800),
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,  # the same examples on every run: CI stays deterministic
    database=None,  # no replay of examples saved by earlier local runs
)

_counter = itertools.count()

TOKENS = [
    "epoch", "step", "loss", "val_loss", "train_loss", "accuracy", "lr", "lr-SGD",
    "0", "1", "2", "10", "-3", "0.5", "1e-04", "1E+3", "nan", "NaN", "inf", "-inf", "NA",
    "True", "False", "None", "null", "tensor(0.5)", "0,5", "1.#INF",
    ",", ",", ",", ";", "\t", "|", " ", '"', "\n", "\n", "\n", "\r\n", "\r\r\n", "\r",
    "\ufeff", "\x00", "\xe9", "{", "}", ":", "[", "]", '{"loss": 1}', '{"step": 0}',
    "model_history_log",
]


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def check(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    looks_like_table(data[:4096])
    looks_like_jsonl(data[:4096])
    try:
        runs = read_table_file(path)
    except InputError as exc:
        assert exc.path == str(path) and exc.problem
        return
    assert runs
    for run in runs:
        assert isinstance(run, Run)
        for series in run.series.values():
            assert isinstance(series, Series)
            assert series.steps.dtype == np.int64
            assert series.values.dtype == np.float64
            assert np.all(np.diff(series.steps) >= 0)
            assert len(series) > 0


def fresh(fuzz_dir: Path) -> Path:
    return fuzz_dir / f"f{next(_counter)}.csv"


@FUZZ
@given(st.binary(max_size=600))
def test_random_bytes(fuzz_dir: Path, data: bytes) -> None:
    check(fresh(fuzz_dir), data)


@FUZZ
@given(st.lists(st.sampled_from(TOKENS), max_size=80))
def test_csvish_text(fuzz_dir: Path, tokens: list[str]) -> None:
    check(fresh(fuzz_dir), "".join(tokens).encode("utf-8", "surrogatepass"))


@st.composite
def tables(draw: st.DrawFn) -> bytes:
    """A plausible log (Keras, Lightning-style or headerless), then damaged."""
    ncols = draw(st.integers(1, 5))
    names = draw(
        st.lists(st.sampled_from(["epoch", "step", "loss", "val_loss", "acc", "lr", "x", ""]),
                 min_size=ncols, max_size=ncols)
    )
    cell = st.one_of(
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.integers(-5, 10**20).map(str),
        st.sampled_from(["", "nan", "NA", "True", "1e-04", '"1.5"', "x"]),
    )
    rows = draw(st.lists(st.lists(cell, min_size=ncols, max_size=ncols), max_size=25))
    delim = draw(st.sampled_from([",", ";", "\t", "|"]))
    end = draw(st.sampled_from(["\n", "\r\n", "\r\r\n"]))
    lines = [delim.join(names)] + [delim.join(r) for r in rows]
    if draw(st.booleans()):
        lines.insert(0, "model_history_log")
    if draw(st.booleans()) and rows:  # a second delimiter sneaks into one row
        i = draw(st.integers(1, len(lines) - 1))
        lines[i] = lines[i].replace(delim, draw(st.sampled_from([",", ";", "\t", "|"])), 1)
    data = end.join(lines).encode()
    if draw(st.booleans()):
        cut = draw(st.integers(0, len(data)))
        data = data[:cut]  # a file cut while being written
    return data


@FUZZ
@given(tables())
def test_damaged_tables(fuzz_dir: Path, data: bytes) -> None:
    check(fresh(fuzz_dir), data)


@FUZZ
@given(
    st.lists(
        st.dictionaries(
            st.sampled_from(["step", "epoch", "loss", "val_loss", "lr", "a"]),
            st.recursive(
                st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=4),
                lambda inner: st.dictionaries(st.text(max_size=3), inner, max_size=3)
                | st.lists(inner, max_size=3),
                max_leaves=6,
            ),
            max_size=5,
        ),
        max_size=20,
    ),
    st.integers(0, 10**6),
)
def test_jsonl(fuzz_dir: Path, records: list[dict[str, object]], cut: int) -> None:
    import json

    text = "\n".join(json.dumps(r) for r in records)
    check(fresh(fuzz_dir), text.encode()[: max(cut, 1)])
