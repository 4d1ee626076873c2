"""The command line: exit statuses, JSON contract, and one clear line for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lossdoctor import __version__
from lossdoctor.cli import main

HEALTHY_CSV = "epoch,loss,val_loss,accuracy,val_accuracy\n" + "".join(
    f"{e},{2.3 * 0.8**e:.5f},{2.35 * 0.8**e + 0.01:.5f},{min(0.99, 0.3 + 0.07 * e):.3f},"
    f"{min(0.98, 0.3 + 0.068 * e):.3f}\n"
    for e in range(20)
)
NAN_CSV = "epoch,loss,val_loss\n" + "".join(
    f"{e},{2.3 * 0.9**e if e < 6 else float('nan')},{2.3 * 0.9**e if e < 6 else float('nan')}\n"
    for e in range(10)
)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lossdoctor", *args], capture_output=True, text=True, timeout=120
    )


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def test_version_and_help_with_examples():
    out = cli("--version")
    assert out.returncode == 0 and __version__ in out.stdout
    out = cli("diagnose", "--help")
    assert out.returncode == 0
    assert "examples:" in out.stdout and "--fail-on" in out.stdout


def test_healthy_log_exits_zero(tmp_path: Path):
    path = write(tmp_path, "healthy.csv", HEALTHY_CSV)
    assert main(["diagnose", str(path)]) == 0


def test_critical_finding_exits_one_and_json_follows_the_contract(tmp_path: Path, capsys):
    path = write(tmp_path, "nan.csv", NAN_CSV)
    assert main(["diagnose", str(path), "--format", "json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["lossdoctor"] == __version__
    [run] = doc["runs"]
    assert set(run) >= {"run", "source", "format", "regime", "findings"}
    finding = next(f for f in run["findings"] if f["code"] == "nan-loss")
    assert set(finding) == {
        "code", "severity", "title", "step", "epoch", "layer", "evidence", "explanation",
        "fixes",
    }
    assert finding["severity"] == "critical" and finding["epoch"] == 6
    assert isinstance(finding["fixes"], list) and finding["fixes"]


def test_fail_on_warning(tmp_path: Path):
    # Validation bottoms out and climbs while training keeps falling: a warning.
    rows = "".join(
        f"{e},{2.0 * 0.85**e:.5f},{1.0 + 0.02 * (e - 8) ** 2:.5f}\n" for e in range(30)
    )
    path = write(tmp_path, "overfit.csv", "epoch,loss,val_loss\n" + rows)
    assert main(["diagnose", str(path)]) == 0
    assert main(["diagnose", str(path), "--fail-on", "warning"]) == 1


BAD_INPUTS = {
    "missing": (None, "no such file"),
    "empty.csv": (b"", "empty file"),
    "picture.png": (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "not a"),
    "corrupt.tfevents": (b"\x18\x00\x00\x00\x00\x00\x00\x00" + b"\xff" * 40, "not a"),
    "noloss.csv": (b"epoch,accuracy,f1\n0,0.5,0.4\n1,0.6,0.5\n", "no loss series"),
    "allnan.csv": (b"epoch,loss\n0,\n1,\n2,\n", "loss"),
    # A CSV log of a run that stopped before its first row: it was "not a training log".
    "header-only.csv": (b"epoch,loss,val_loss\n",
                        "a table header (epoch, loss, val_loss) and no rows yet"),
    "words.txt": (b"hello world\n", "not a training log"),
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_naming_the_file_exit_two(tmp_path: Path, name: str):
    content, problem = BAD_INPUTS[name]
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    before = path.read_bytes() if path.exists() else None
    out = cli("diagnose", str(path))
    assert out.returncode == 2, out
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert str(path) in lines[0] and problem in lines[0]
    assert "Traceback" not in out.stderr + out.stdout
    if before is not None:
        assert path.read_bytes() == before  # never touched


def test_unknown_override_names_the_columns(tmp_path: Path):
    path = write(tmp_path, "h.csv", HEALTHY_CSV)
    out = cli("diagnose", str(path), "--train-loss", "nope")
    assert out.returncode == 2
    assert "nope" in out.stderr and "val_loss" in out.stderr


def test_bad_run_in_a_folder_does_not_hide_the_others(tmp_path: Path):
    write(tmp_path, "good.csv", HEALTHY_CSV)
    write(tmp_path, "bad.csv", "epoch,accuracy\n0,0.1\n")
    out = cli("diagnose", str(tmp_path), "--format", "json")
    assert out.returncode == 2
    doc = json.loads(out.stdout)
    assert [r["run"] for r in doc["runs"]] == ["good.csv"]
    assert doc["errors"][0]["source"].endswith("bad.csv")


def test_usage_error_exits_two():
    out = cli("diagnose")
    assert out.returncode == 2 and "Traceback" not in out.stderr


def test_text_report_fits_80_columns_and_reads_without_colour(tmp_path: Path, capsys):
    long_name = "a-rather-long-experiment-name-with-many-hyperparameters-lr0.1-bs32-wd1e-4"
    path = write(tmp_path, f"{long_name}.csv", NAN_CSV)
    write(tmp_path, "healthy.csv", HEALTHY_CSV)
    main(["diagnose", str(tmp_path), "--details", "--color", "never"])
    out = capsys.readouterr().out
    assert "\033[" not in out
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "[CRITICAL] nan-loss" in out  # severity is in words, not only in colour
    assert out.index("nan-loss") < out.index("healthy.csv  (")  # worst first
    assert path.exists()


WILD = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "wild-logs"


@pytest.mark.skipif(not WILD.is_dir(), reason="shared/data/wild-logs is not beside the repo")
def test_lightning_logs_folder_every_version_is_a_run(tmp_path: Path, capsys):
    for version, wild in enumerate(["w06.csv", "w07.csv"]):
        folder = tmp_path / "lightning_logs" / f"version_{version}"
        folder.mkdir(parents=True)
        (folder / "metrics.csv").write_bytes((WILD / wild).read_bytes())
        (folder / "hparams.yaml").write_text("lr: 0.001\nbatch_size: 32\n")
    assert main(["diagnose", str(tmp_path / "lightning_logs"), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [r["run"] for r in doc["runs"]] == [
        "version_0/metrics.csv",
        "version_1/metrics.csv",
    ]
    assert {r["format"] for r in doc["runs"]} == {"lightning-csv"}
    assert doc["errors"] == []


@pytest.mark.skipif(not WILD.is_dir(), reason="shared/data/wild-logs is not beside the repo")
def test_every_wild_log_is_read_and_diagnosed(capsys):
    status = main(["diagnose", str(WILD), "--format", "json"])
    doc = json.loads(capsys.readouterr().out)
    assert status in (0, 1) and doc["errors"] == []
    assert len(doc["runs"]) >= 33
    assert all(r["regime"] in {"still-learning", "converged", "overfitting", "data-problem",
                               "plateau", "diverging", "unknown"} for r in doc["runs"])
    by_name = {r["run"]: r for r in doc["runs"]}
    # Read off the file: validation loss never beats its first epoch (2.317, best
    # 2.313; then up to 4.63) and validation accuracy stays at 10-15% while training
    # accuracy climbs to 78%: nothing learned carries over to validation.
    assert by_name["w16.csv"]["regime"] == "data-problem"
    # Accuracy 1/26 = 3.8% on validation throughout, at most 7.7% on training, and a
    # first validation loss of 3.2666 (ln 26 = 3.2581): 26 classes, never learned.
    [plateau] = [f for f in by_name["w20.csv"]["findings"] if f["code"] == "plateau"]
    assert plateau["evidence"]["chance_classes"] == 26
    # Binary (first loss 0.690, ln 2 = 0.693) and 39 validation passes later the lowest
    # loss is 0.633 (training's), 8.6% below ln 2, accuracy at best 66%: still falling,
    # so still learning, but close to a coin toss; and the only wild log that is.
    # Read off the file: -33,835 at epoch 0, -6.5e7 at epoch 69, falling faster and
    # faster (an ECG model's binary cross-entropy, whose loss cannot go below zero).
    assert by_name["w30.log"]["regime"] == "diverging"
    [runaway] = by_name["w30.log"]["findings"]
    assert runaway["title"].startswith("The loss fell without a floor")
    [barely] = [f for f in by_name["w13.csv"]["findings"] if f["code"] == "barely-learning"]
    assert by_name["w13.csv"]["regime"] == "still-learning"
    assert barely["evidence"]["classes"] == 2
    assert barely["evidence"]["validation_passes"] == 39
    assert [r["run"] for r in doc["runs"]
            if any(f["code"] == "barely-learning" for f in r["findings"])] == [
        "w13.csv", "w25.csv"]
    # Read off the file: a face model's two outputs; age_output's training accuracy
    # climbs from 21% to 37%, while gender_output's validation accuracy stays at 47-56%
    # (binary; training 49-52%) and its validation loss at 0.677-0.769 (ln 2 = 0.693)
    # for all 41 epochs. The summed
    # loss falls with the age output, so the run is still learning; the gender output
    # is not.
    assert by_name["w25.csv"]["regime"] == "still-learning"
    [head] = by_name["w25.csv"]["findings"]
    assert (head["code"], head["layer"]) == ("barely-learning", "gender_output")
    assert head["evidence"]["classes"] == 2 and head["evidence"]["epochs"] == 41
    # Read off the file: validation loss 0.97-1.08 from epoch 34 on and 0.97-1.00 over
    # the last 20 epochs (best 0.969 at epoch 44), while training fell from 0.89 (epoch
    # 36) to 0.71, through five learning-rate cuts: stopped improving, not
    # "still learning".
    assert by_name["w29.csv"]["regime"] == "overfitting"
    [stalled] = by_name["w29.csv"]["findings"]
    assert stalled["title"].startswith("Validation loss has stayed near 0.98")
    assert stalled["evidence"]["val_flat_last_points"] == 12


def test_verify_catches_a_flipped_data_byte(tmp_path: Path):
    from lossdoctor.sources.tbwriter import EventFileWriter

    with EventFileWriter(tmp_path) as writer:
        for step in range(50):
            writer.add_scalar("train/loss", 2.0 / (step + 1), step)
        path = Path(writer.path)
    data = bytearray(path.read_bytes())
    data[-10] ^= 0x01  # inside the last record's payload: framing stays intact
    path.write_bytes(bytes(data))
    assert cli("diagnose", str(path)).returncode in (0, 1)  # read as it is
    out = cli("diagnose", str(path), "--verify")
    assert out.returncode == 2 and "CRC" in out.stderr.upper() and str(path) in out.stderr


def test_a_reader_bug_costs_one_run_not_the_report(tmp_path: Path, monkeypatch, capsys):
    import lossdoctor.sources.tabular as tabular

    write(tmp_path, "a.csv", HEALTHY_CSV)
    write(tmp_path, "b.csv", HEALTHY_CSV)
    real = tabular.read_table_file

    def flaky(path, **kwargs):
        if Path(path).name == "b.csv":
            raise IndexError("simulated reader bug")
        return real(path, **kwargs)

    monkeypatch.setattr(tabular, "read_table_file", flaky)
    assert main(["diagnose", str(tmp_path), "--format", "json"]) == 2
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert [r["run"] for r in doc["runs"]] == ["a.csv"]
    assert "simulated reader bug" in captured.err and "Traceback" not in captured.err


def test_diagnose_html_writes_the_report_and_never_replaces_a_file(tmp_path: Path):
    log = write(tmp_path, "nan.csv", NAN_CSV)
    html = tmp_path / "report.html"
    assert main(["diagnose", str(log), "--html", str(html)]) == 1
    text = html.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and "nan-loss" in text
    html.write_text("my notes")
    assert main(["diagnose", str(log), "--html", str(html)]) == 2
    assert html.read_text() == "my notes"
    assert main(["diagnose", str(log), "--html", str(html), "--force"]) == 1
    assert "nan-loss" in html.read_text(encoding="utf-8")


def test_a_log_piped_into_standard_input(tmp_path: Path):
    def piped(content: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "lossdoctor", *args], input=content,
                              capture_output=True, text=True, timeout=120)

    out = piped(NAN_CSV, "diagnose", "-", "--format", "json")
    doc = json.loads(out.stdout)
    assert out.returncode == 1 and doc["errors"] == []
    [run] = doc["runs"]
    assert run["run"] == "stdin" and run["source"] == "-"
    assert "nan-loss" in {f["code"] for f in run["findings"]}
    report = tmp_path / "report.html"
    assert piped(HEALTHY_CSV, "report", "-", "-o", str(report)).returncode == 0
    assert "stdin" in report.read_text()
    bad = piped("not a log at all\n", "diagnose", "-")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "lossdoctor: -: not a training log (expected a TensorBoard event file, a CSV log "
        "or JSON Lines)"]
