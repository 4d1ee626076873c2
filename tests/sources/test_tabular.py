"""The tabular readers: Keras CSVLogger, Lightning metrics.csv, plain CSV, JSON Lines."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from lossdoctor.errors import InputError
from lossdoctor.run import LR, TRAIN_ACC, TRAIN_LOSS, VAL_ACC, VAL_LOSS, Run
from lossdoctor.sources.tabular import (
    MAX_LINE_BYTES,
    has_loss,
    looks_like_jsonl,
    looks_like_table,
    read_table_file,
)

KERAS = (
    "epoch,accuracy,loss,val_accuracy,val_loss\n"
    "0,0.5,1.5,0.4,1.6\n"
    "1,0.6,1.2,0.5,1.3\n"
    "2,0.7,0.9,0.55,1.1\n"
)


def write(tmp_path: Path, text: str | bytes, name: str = "log.csv") -> Path:
    p = tmp_path / name
    if isinstance(text, str):
        p.write_bytes(text.encode("utf-8"))
    else:
        p.write_bytes(text)
    return p


def one(tmp_path: Path, text: str | bytes, name: str = "log.csv", **kw: str) -> Run:
    runs = read_table_file(write(tmp_path, text, name), **kw)
    assert len(runs) == 1, [r.name for r in runs]
    return runs[0]


def problem(tmp_path: Path, text: str | bytes, **kw: str) -> str:
    p = write(tmp_path, text)
    with pytest.raises(InputError) as info:
        read_table_file(p, **kw)
    assert info.value.path == str(p)
    return info.value.problem


# ------------------------------------------------------------------ Keras CSVLogger


def test_keras_csv(tmp_path: Path) -> None:
    run = one(tmp_path, KERAS, "training.log")
    assert run.name == "training"
    assert run.format == "keras-csv"
    assert run.source == str(tmp_path / "training.log")
    assert set(run.series) == {TRAIN_LOSS, VAL_LOSS, TRAIN_ACC, VAL_ACC}
    loss = run.series[TRAIN_LOSS]
    assert loss.steps.dtype == np.int64 and loss.values.dtype == np.float64
    assert loss.steps.tolist() == [0, 1, 2]
    assert loss.epochs is not None and loss.epochs.tolist() == [0, 1, 2]
    assert loss.values.tolist() == [1.5, 1.2, 0.9]
    assert run.series[VAL_ACC].values.tolist() == [0.4, 0.5, 0.55]
    assert run.meta["columns"] == ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"]
    assert run.meta["delimiter"] == ","
    assert run.meta["first_epoch"] == 0
    assert run.warnings == []
    assert has_loss(run)


@pytest.mark.parametrize("delim", [";", "\t", "|"])
def test_other_delimiters(tmp_path: Path, delim: str) -> None:
    run = one(tmp_path, KERAS.replace(",", delim))
    assert run.meta["delimiter"] == delim
    assert run.format == "keras-csv"
    assert run.series[VAL_LOSS].values.tolist() == [1.6, 1.3, 1.1]


@pytest.mark.parametrize("end", ["\r\n", "\r\r\n", "\r"])
def test_line_ends_and_bom(tmp_path: Path, end: str) -> None:
    run = one(tmp_path, "\ufeff" + KERAS.replace("\n", end))
    assert run.meta["columns"][0] == "epoch"  # the BOM is not part of the first name
    assert run.series[TRAIN_LOSS].values.tolist() == [1.5, 1.2, 0.9]
    assert run.series[VAL_LOSS].values.tolist() == [1.6, 1.3, 1.1]


def test_junk_first_line(tmp_path: Path) -> None:
    run = one(tmp_path, "model_history_log\r\n" + KERAS.replace(",", ";"))
    assert run.series[TRAIN_LOSS].values.tolist() == [1.5, 1.2, 0.9]
    assert run.meta["skipped_lines"] == 1
    assert any("before the header" in w for w in run.warnings)


def test_blank_lines_spaces_and_trailing_delimiters(tmp_path: Path) -> None:
    text = (
        "\n epoch , loss , val_loss ,\n"
        "\n"
        "0, 1.5 ,1.6,\n"
        "   \n"
        "1,1.2,1.3,\n"
        "\n\n"
    )
    run = one(tmp_path, text)
    assert run.meta["columns"] == ["epoch", "loss", "val_loss"]
    assert run.series[TRAIN_LOSS].values.tolist() == [1.5, 1.2]
    assert run.series[VAL_LOSS].steps.tolist() == [0, 1]


def test_quoted_fields(tmp_path: Path) -> None:
    text = '"epoch","loss","note"\n"0","1.5","a, b"\n"1","1.25","c"\n'
    run = one(tmp_path, text)
    assert run.series[TRAIN_LOSS].values.tolist() == [1.5, 1.25]
    assert "extra/note" not in run.series  # text column skipped
    assert any("'note'" in w for w in run.warnings)


def test_number_spellings(tmp_path: Path) -> None:
    text = "epoch,loss,lr\n0,1e-04,1E-3\n1,nan,0.5\n2,inf,-inf\n3,NaN,Infinity\n4,-1.#INF,1\n"
    run = one(tmp_path, text)
    loss = run.series[TRAIN_LOSS].values
    assert loss[0] == 1e-4
    assert math.isnan(loss[1]) and loss[2] == math.inf and math.isnan(loss[3])
    assert loss[4] == -math.inf
    assert run.series[LR].values.tolist()[:2] == [1e-3, 0.5]
    assert len(run.series[TRAIN_LOSS]) == 5  # explicit nan stays a point


def test_decimal_comma_and_tensor_cells(tmp_path: Path) -> None:
    run = one(tmp_path, "epoch;loss\n0;0,5\n1;0,25\n")
    assert run.series[TRAIN_LOSS].values.tolist() == [0.5, 0.25]
    run = one(tmp_path, "step,loss\n0,\"tensor(0.69, device='cuda:0')\"\n1,tensor(0.5)\n")
    assert run.series[TRAIN_LOSS].values.tolist() == [0.69, 0.5]


def test_keras_na_is_missing(tmp_path: Path) -> None:
    # CSVLogger writes NA for a metric an epoch lacks (validation_freq=2).
    text = "epoch,loss,val_loss\n0,1.0,NA\n1,0.8,0.9\n2,0.7,NA\n3,0.6,0.8\n"
    run = one(tmp_path, text)
    assert run.format == "keras-csv"
    assert run.series[VAL_LOSS].steps.tolist() == [1, 3]
    assert run.series[TRAIN_LOSS].steps.tolist() == [0, 1, 2, 3]


def test_appended_runs_split(tmp_path: Path) -> None:
    text = "epoch,loss\n0,1.0\n1,0.9\n2,0.8\n0,1.1\n1,1.0\n3,0.5\n4,0.4\n2,0.45\n"
    runs = read_table_file(write(tmp_path, text, "hist.csv"))
    assert [r.name for r in runs] == ["hist#1", "hist#2", "hist#3"]
    assert [r.series[TRAIN_LOSS].steps.tolist() for r in runs] == [
        [0, 1, 2],
        [0, 1, 3, 4],
        [2],
    ]
    assert [r.meta["segment"] for r in runs] == [1, 2, 3]
    assert all(r.meta["segments"] == 3 for r in runs)
    assert runs[2].meta["first_epoch"] == 2


def test_repeated_epoch_is_a_restart_in_keras(tmp_path: Path) -> None:
    runs = read_table_file(write(tmp_path, "epoch,loss\n0,1.0\n0,0.9\n"))
    assert len(runs) == 2


def test_resumed_run_is_one_run(tmp_path: Path) -> None:
    text = "epoch,loss\n10,0.5\n11,0.45\n12,0.4\n"
    run = one(tmp_path, text)
    assert run.series[TRAIN_LOSS].steps.tolist() == [10, 11, 12]
    assert run.meta["first_epoch"] == 10
    assert run.meta["resumed"] is True


def test_repeated_header_starts_a_new_run(tmp_path: Path) -> None:
    text = "epoch,loss\n0,1.0\n1,0.9\nepoch,loss\n2,0.8\n"  # concatenated files
    runs = read_table_file(write(tmp_path, text, "cat.csv"))
    assert [r.name for r in runs] == ["cat#1", "cat#2"]
    assert runs[1].series[TRAIN_LOSS].values.tolist() == [0.8]


# ------------------------------------------------------------------ Lightning

LIGHTNING = (
    "epoch,step,train_loss,val_loss,val_acc\n"
    "0,49,0.9,,\n"
    "0,99,0.8,,\n"
    "0,99,,0.85,0.6\n"
    "1,149,nan,,\n"
    "1,199,0.6,,\n"
    "1,199,,0.7,0.7\n"
)


def test_lightning_interleaved_rows(tmp_path: Path) -> None:
    run = one(tmp_path, LIGHTNING, "metrics.csv")
    assert run.format == "lightning-csv"
    loss = run.series[TRAIN_LOSS]
    assert loss.steps.tolist() == [49, 99, 149, 199]
    assert loss.epochs is not None and loss.epochs.tolist() == [0, 0, 1, 1]
    assert math.isnan(loss.values[2])  # explicit nan kept; empty cells are missing
    assert loss.values[[0, 1, 3]].tolist() == [0.9, 0.8, 0.6]
    val = run.series[VAL_LOSS]
    assert val.steps.tolist() == [99, 199] and val.values.tolist() == [0.85, 0.7]
    assert run.series[VAL_ACC].epochs is not None
    assert run.series[VAL_ACC].epochs.tolist() == [0, 1]


def test_lightning_fast_and_slow_paths_agree(tmp_path: Path) -> None:
    fast = one(tmp_path, LIGHTNING, "a.csv")  # numpy's loader, empty cells marked
    slow = one(tmp_path, LIGHTNING.replace("\n1,149", "\n# a comment\n1,149"), "b.csv")
    assert any("do not fit" in w for w in slow.warnings)  # the row-by-row path ran
    assert fast.format == slow.format == "lightning-csv"
    assert fast.series.keys() == slow.series.keys()
    for key, a in fast.series.items():
        b = slow.series[key]
        assert a.steps.tolist() == b.steps.tolist()
        assert np.array_equal(a.values, b.values, equal_nan=True)
        assert a.epochs is not None and b.epochs is not None
        assert a.epochs.tolist() == b.epochs.tolist()


def test_lightning_step_decrease_splits(tmp_path: Path) -> None:
    text = LIGHTNING + "0,49,0.95,,\n0,99,,0.9,0.5\n"
    runs = read_table_file(write(tmp_path, text, "metrics.csv"))
    assert [r.name for r in runs] == ["metrics#1", "metrics#2"]
    assert runs[1].series[TRAIN_LOSS].values.tolist() == [0.95]
    assert runs[1].series[VAL_LOSS].steps.tolist() == [99]


def test_lightning_lr_rows_without_epoch(tmp_path: Path) -> None:
    # LearningRateMonitor rows carry a step but no epoch.
    text = (
        "lr-SGD,step,train_loss,epoch,val_loss\n"
        "0.1,49,,,\n"
        ",49,2.0,0,\n"
        ",60,,0,1.9\n"
        "0.05,99,,,\n"
        ",99,1.5,1,\n"
    )
    run = one(tmp_path, text)
    assert run.format == "lightning-csv"
    lr = run.series[LR]
    assert lr.steps.tolist() == [49, 99]
    assert lr.epochs is not None and lr.epochs.tolist() == [0, 1]
    assert "extra/epoch" not in run.series


def test_lightning_without_step_column(tmp_path: Path) -> None:
    text = "epoch,train_loss,val_loss\n0,1.0,\n0,,1.1\n1,0.8,\n1,,0.9\n"
    run = one(tmp_path, text)
    assert run.format == "lightning-csv"  # a repeated epoch here is not a restart
    assert run.series[TRAIN_LOSS].steps.tolist() == [0, 1]
    assert run.series[VAL_LOSS].values.tolist() == [1.1, 0.9]


def test_step_level_loss_used_when_epoch_level_is_empty(tmp_path: Path) -> None:
    text = "epoch,step,train_loss_step,train_loss_epoch\n0,1,0.9,\n0,2,0.8,\n"
    run = one(tmp_path, text)
    assert run.series[TRAIN_LOSS].values.tolist() == [0.9, 0.8]


# ------------------------------------------------------------------ plain CSV


def test_history_dump_without_epoch(tmp_path: Path) -> None:
    run = one(tmp_path, "loss,val_loss\n0.9,1.0\n0.8,0.95\n0.7,0.97\n")
    assert run.format == "csv"
    assert run.series[TRAIN_LOSS].steps.tolist() == [0, 1, 2]
    assert run.series[TRAIN_LOSS].epochs is None
    assert run.meta["index"] == "row"


def test_pandas_index_column(tmp_path: Path) -> None:
    run = one(tmp_path, ",loss,accuracy\n0,0.9,0.5\n1,0.8,0.6\n")
    assert run.format == "csv"
    assert set(run.series) == {TRAIN_LOSS, TRAIN_ACC}


def test_iteration_column_gives_steps(tmp_path: Path) -> None:
    run = one(tmp_path, "iteration,loss\n100,0.9\n200,0.8\n")
    assert run.format == "csv"
    assert run.series[TRAIN_LOSS].steps.tolist() == [100, 200]


def test_single_column(tmp_path: Path) -> None:
    run = one(tmp_path, "loss\n0.9\n0.8\n")
    assert run.series[TRAIN_LOSS].values.tolist() == [0.9, 0.8]


def test_text_columns(tmp_path: Path) -> None:
    text = "epoch,loss,improved,val_loss\n0,1.0,True,1.1\n1,0.9,False,1.0\n"
    run = one(tmp_path, text)
    assert "extra/improved" not in run.series
    assert run.meta["skipped_columns"] == ["improved"]
    assert any("'improved' is not numeric" in w for w in run.warnings)


def test_text_cells_in_the_loss_keep_its_numbers(tmp_path: Path) -> None:
    text = "epoch,loss\n0,1.0\n1,oops\n2,error\n3,0.7\n"
    run = one(tmp_path, text)
    assert run.series[TRAIN_LOSS].steps.tolist() == [0, 3]
    assert any("'loss': 2 cell(s) are not numbers" in w for w in run.warnings)


def test_loss_without_numbers(tmp_path: Path) -> None:
    assert problem(tmp_path, "epoch,loss\n0,True\n1,False\n") == (
        "the loss column 'loss' holds no numbers"
    )
    text = "epoch,step,train_loss,val_loss\n0,1,,0.5\n0,2,,0.4\n"
    assert problem(tmp_path, text) == "the loss column 'train_loss' holds no numbers"


def test_all_nan_loss_is_kept(tmp_path: Path) -> None:
    # A run that is NaN from the first epoch is a diagnosis, not unreadable input.
    run = one(tmp_path, "epoch,loss\n0,nan\n1,nan\n")
    assert np.isnan(run.series[TRAIN_LOSS].values).all()
    assert len(run.series[TRAIN_LOSS]) == 2


def test_cut_last_row(tmp_path: Path) -> None:
    run = one(tmp_path, "epoch,loss,val_loss\n0,1.0,1.1\n1,0.9")
    assert run.format == "keras-csv"  # the filler of a cut row is not Lightning's gaps
    assert run.series[TRAIN_LOSS].values.tolist() == [1.0, 0.9]
    assert run.series[VAL_LOSS].values.tolist() == [1.1]
    assert any("incomplete" in w for w in run.warnings)


def test_misfit_lines_are_skipped(tmp_path: Path) -> None:
    text = "epoch,loss,val_loss\n0,1.0,1.1\nEpoch 1: reducing learning rate\n1,0.9,1.0\n"
    run = one(tmp_path, text)
    assert run.series[TRAIN_LOSS].values.tolist() == [1.0, 0.9]
    assert any("do not fit" in w and "line 3" in w for w in run.warnings)


def test_fast_and_slow_paths_agree(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    rows = ["epoch,loss,val_loss"] + [
        f"{i},{rng.random()!r},{rng.random()!r}" for i in range(50)
    ]
    fast = one(tmp_path, "\n".join(rows) + "\n")
    slow = one(tmp_path, "\n".join([*rows[:10], "", "  ", *rows[10:]]) + "\n", "b.csv")
    for key in fast.series:
        assert fast.series[key].values.tolist() == slow.series[key].values.tolist()
        assert fast.series[key].steps.tolist() == slow.series[key].steps.tolist()


def test_no_loss_column_is_not_an_error(tmp_path: Path) -> None:
    run = one(tmp_path, "epoch,mae,val_mae\n0,1.0,1.1\n1,0.9,1.0\n")
    assert not has_loss(run)
    assert set(run.series) == {"extra/mae", "extra/val_mae"}


def test_overrides(tmp_path: Path) -> None:
    text = "epoch,my_obj,holdout\n0,1.0,1.1\n1,0.9,1.0\n"
    run = one(tmp_path, text, train_loss="my_obj", val_loss="holdout")
    assert run.series[TRAIN_LOSS].values.tolist() == [1.0, 0.9]
    assert run.series[VAL_LOSS].values.tolist() == [1.1, 1.0]
    assert problem(tmp_path, text, train_loss="x") == (
        "no column named 'x' (columns: my_obj, holdout)"
    )


def test_non_utf8_bytes(tmp_path: Path) -> None:
    run = one(tmp_path, b"epoch,loss,pr\xe9cision\n0,1.0,0.5\n1,0.9,0.6\n")
    assert "extra/pr\ufffdcision" in run.series


def test_utf16(tmp_path: Path) -> None:
    run = one(tmp_path, KERAS.encode("utf-16"))
    assert run.series[TRAIN_LOSS].values.tolist() == [1.5, 1.2, 0.9]


def test_nul_tail(tmp_path: Path) -> None:
    run = one(tmp_path, KERAS.encode() + b"\x00" * 100)
    assert len(run.series[TRAIN_LOSS]) == 3
    assert any("NUL" in w for w in run.warnings)


# ------------------------------------------------------------------ JSON Lines


def test_jsonl(tmp_path: Path) -> None:
    text = (
        '{"step": 0, "epoch": 0, "loss": 1.0, "lr": 0.1, "ok": true}\n'
        "not json\n"
        '{"step": 1, "epoch": 0, "loss": NaN, "eval": {"loss": 1.2}}\n'
        '{"step": 2, "epoch": 1, "loss": null, "lr": 0.05}\n'
        '{"step": 3, "epoch": 1, "loss": 0.5, "lr": 0.0'
    )
    run = one(tmp_path, text, "log.csv")  # content, not extension
    assert run.format == "jsonl"
    loss = run.series[TRAIN_LOSS]
    assert loss.steps.tolist() == [0, 1] and math.isnan(loss.values[1])
    assert run.series[VAL_LOSS].values.tolist() == [1.2]  # "eval/loss"
    assert run.series[LR].values.tolist() == [0.1, 0.05]
    assert "extra/ok" not in run.series  # booleans are not metrics
    assert any("not JSON objects" in w for w in run.warnings)


def test_jsonl_restart(tmp_path: Path) -> None:
    text = "".join(f'{{"step": {s}, "loss": 1}}\n' for s in (0, 10, 20, 0, 10))
    runs = read_table_file(write(tmp_path, text, "a.jsonl"))
    assert [len(r.series[TRAIN_LOSS]) for r in runs] == [3, 2]


# ------------------------------------------------------------------ sniffing


def test_sniffing() -> None:
    assert looks_like_table(KERAS.encode())
    assert looks_like_table(("model_history_log\r\n" + KERAS.replace(",", ";")).encode())
    assert looks_like_table(LIGHTNING.encode())
    assert not looks_like_table(b"")
    assert not looks_like_table(b"\x00\x01\x02binary\x00")
    assert not looks_like_table(b"# README\n\nSome prose, with commas, here.\n")
    assert not looks_like_table(b'{"loss": 1.0}\n')
    wide = ",".join(f"class_{i}_precision" for i in range(400)) + "\n0,1\n"
    assert looks_like_table(wide.encode()[:4096])  # the head ends inside the header
    assert not looks_like_table(b"Some prose, with commas, and no line end" * 200)
    assert looks_like_jsonl(b'{"loss": 1.0}\n{"loss": 0.9}\n')
    assert looks_like_jsonl(b'\n  {"loss": 1.0, "x": "' + b"a" * 5000)  # head cut short
    assert not looks_like_jsonl(KERAS.encode())
    assert not looks_like_jsonl(b"[1, 2]\n")
    assert not looks_like_jsonl(b"\x00\x00")


# ------------------------------------------------------------------ errors


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        read_table_file(tmp_path / "nope.csv")
    with pytest.raises(InputError, match="is a directory"):
        read_table_file(tmp_path)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "empty file"),
        (b"  \r\n\n", "empty file"),
        (bytes(range(256)) * 4, "not a text log (binary content)"),
        (b"0,1.0\n1,0.9\n", "no header row naming the columns"),
        (b"epoch,loss\n", "no numeric columns (a header but no data rows)"),
        (b"name,city\nann,paris\nbob,rome\n", "no numeric columns"),
        (b"hello world\n", "no numeric columns"),
    ],
)
def test_errors(tmp_path: Path, content: bytes, expected: str) -> None:
    assert problem(tmp_path, content) == expected


def test_huge_line_is_refused(tmp_path: Path) -> None:
    content = b"epoch,loss\n0,1.0\n" + b"9" * (MAX_LINE_BYTES + 10) + b"\n"
    msg = problem(tmp_path, content)
    assert "longer than 1 MiB" in msg


def test_too_many_columns(tmp_path: Path) -> None:
    header = ",".join(f"c{i}" for i in range(10_001))
    msg = problem(tmp_path, header + "\n" + ",".join(["1"] * 10_001) + "\n")
    assert msg == "more than 10000 columns: not a training log"


def test_deeply_nested_json_line(tmp_path: Path) -> None:
    deep = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
    run = one(tmp_path, b'{"loss": 1.0}\n' + deep + b"\n" + b'{"loss": 0.5}\n')
    assert run.series[TRAIN_LOSS].values.tolist() == [1.0, 0.5]
    assert any("not JSON objects (first: line 2)" in w for w in run.warnings)


def test_stray_cell_in_the_epoch_column(tmp_path: Path) -> None:
    run = one(tmp_path, "epoch,loss\n0,1.0\n?,0.9\n2,0.8\n")
    assert run.format == "keras-csv"
    assert run.series[TRAIN_LOSS].steps.tolist() == [0, 0, 2]


def test_big_file_with_normal_lines(tmp_path: Path) -> None:
    rows = "".join(f"{i},{1.0 / (i + 1)!r}\n" for i in range(120_000))
    run = one(tmp_path, "epoch,loss\n" + rows)
    assert len(run.series[TRAIN_LOSS]) == 120_000


# ------------------------------------------------------------------ the wild logs

WILD = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "wild-logs"
APPENDED = {"w09": 4, "w12": 2, "w21": 2, "w31": 2}  # counted by eye: the epoch restarts
LIGHTNING_FILES = {"w04", "w05", "w06", "w07", "w08"}
NO_EPOCH = {"w13", "w32"}  # history.history dumps


@pytest.mark.skipif(not WILD.is_dir(), reason="shared/data/wild-logs is not there")
def test_wild_logs() -> None:
    files = sorted(p for p in WILD.iterdir() if p.name.startswith("w"))
    assert len(files) == 33
    runs = {p.stem: read_table_file(p) for p in files}
    for stem, rs in runs.items():
        assert len(rs) == APPENDED.get(stem, 1), stem
        for r in rs:
            assert has_loss(r), r.name
            loss = r.series[TRAIN_LOSS]
            assert np.all(np.diff(loss.steps) >= 0), r.name
            expected = (
                "lightning-csv" if stem in LIGHTNING_FILES
                else "csv" if stem in NO_EPOCH
                else "keras-csv"
            )
            assert r.format == expected, r.name
            if stem not in LIGHTNING_FILES:
                assert VAL_LOSS in r.series, r.name
    assert [r.name for r in runs["w09"]] == ["w09#1", "w09#2", "w09#3", "w09#4"]
    assert [len(r.series[TRAIN_LOSS]) for r in runs["w09"]] == [5, 4, 10, 5]
    assert [len(r.series[TRAIN_LOSS]) for r in runs["w31"]] == [2, 48]

    def first_last(stem: str, key: str = TRAIN_LOSS, k: int = 0) -> tuple[float, float]:
        v = runs[stem][k].series[key].values
        return float(v[0]), float(v[-1])

    # Values read off the raw files.
    assert first_last("w01") == (0.5149098541840388, 0.07508484612784458)
    w02 = runs["w02"][0]  # `;`, a title line, CRLF, no final newline
    assert w02.meta["delimiter"] == ";"
    assert first_last("w02") == (1.576022744178772, 0.044504035264253616)
    assert first_last("w13") == (0.6904890537261963, 0.6629403829574585)
    assert len(runs["w32"][0].series[TRAIN_LOSS]) == 100
    assert first_last("w30") == (-33834.9765625, -65066624.0)  # negative losses
    assert first_last("w31", k=1)[0] == 5.92240047454834
    assert runs["w22"][0].meta["first_epoch"] == 10
    assert runs["w22"][0].series[TRAIN_LOSS].steps.tolist() == list(range(10, 22))
    assert first_last("w05", VAL_LOSS) == (0.45178964734077454, 0.4440562427043915)
    w07 = runs["w07"][0]
    assert w07.series[LR].values[0] == 0.004229375747361028
    assert w07.series["extra/test_loss"].steps.tolist() == [4710]
    assert first_last("w08") == (1687002880.0, 260379344.0)
    assert runs["w08"][0].series[VAL_LOSS].steps[0] == 683
    assert "extra/train_mean_squared_error" in runs["w08"][0].series


def test_an_unusable_step_column_does_not_let_steps_go_backwards(tmp_path):
    # Found by the fuzz test: the step column held only an out-of-range number, so
    # runs were cut on it while the steps came from the epoch column (0, -1, -1).
    path = tmp_path / "odd.csv"
    path.write_text(
        "acc,step,epoch\n0.5,,0\n0.6,9007199254740992.0,-1\n0.7,,-1\n", encoding="utf-8"
    )
    for run in read_table_file(path):
        for series in run.series.values():
            assert (np.diff(series.steps) >= 0).all()
