"""`lossdoctor report`: exit codes as `diagnose`, one-line errors, never overwrite."""

from __future__ import annotations

from pathlib import Path

import pytest
from synthetic import layered_diagnosis

from lossdoctor.cli import main
from lossdoctor.report import Report, write_html_report


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["report", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_healthy_run_exits_0_and_writes_one_self_contained_file(
    torch_runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report.html"
    code, _, err = _run(capsys, str(torch_runs["healthy"]), "-o", str(out))
    assert (code, err) == (0, "")
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and "<svg" in text
    assert "<script src" not in text and "<link" not in text


def test_exit_status_follows_the_worst_finding(
    torch_runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(capsys, str(torch_runs["nan"]), "-o", str(tmp_path / "a.html"))[0] == 1
    over = str(torch_runs["overfitting"])
    assert _run(capsys, over, "-o", str(tmp_path / "b.html"))[0] == 0
    assert _run(capsys, over, "-o", str(tmp_path / "c.html"), "--fail-on", "warning")[0] == 1


def test_many_paths_make_one_report(
    torch_runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "many.html"
    code, _, _ = _run(capsys, str(torch_runs["healthy"]), str(torch_runs["diverging"]),
                      "-o", str(out), "--title", "sweep <1>")
    assert code == 1
    text = out.read_text(encoding="utf-8")
    assert text.count('<section class="ld-run"') == 4  # tb + metrics.csv of each
    assert 'class="ld-runs"' in text and "sweep &lt;1&gt;" in text


def test_refuses_to_overwrite_without_force(
    torch_runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report.html"
    out.write_text("keep me", encoding="utf-8")
    code, _, err = _run(capsys, str(torch_runs["healthy"]), "-o", str(out))
    assert code == 2
    assert err == f"lossdoctor: {out}: already exists (use --force to overwrite it)\n"
    assert out.read_text(encoding="utf-8") == "keep me"
    code, _, err = _run(capsys, str(torch_runs["healthy"]), "-o", str(out), "--force")
    assert (code, err) == (0, "")
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_unreadable_input_is_one_line_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing, out = tmp_path / "nope.csv", tmp_path / "r.html"
    code, _, err = _run(capsys, str(missing), "-o", str(out))
    assert code == 2
    assert err == f"lossdoctor: {missing}: no such file or directory\n"
    assert "Traceback" not in err and not out.exists()


def test_one_bad_input_among_good_ones_still_reports_and_exits_2(
    torch_runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "garbage.csv"
    bad.write_bytes(b"\x00\x01 not a log")
    out = tmp_path / "r.html"
    code, _, err = _run(capsys, str(torch_runs["healthy"] / "tb"), str(bad), "-o", str(out))
    assert code == 2 and str(bad) in err and len(err.splitlines()) == 1
    assert "could not be read" in out.read_text(encoding="utf-8")


def test_output_folder_must_exist(
    torch_runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "no" / "such" / "r.html"
    code, _, err = _run(capsys, str(torch_runs["healthy"]), "-o", str(out))
    assert code == 2 and err.count("\n") == 1 and "does not exist" in err


def test_output_is_required_and_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["report", "runs/"])
    assert exc.value.code == 2
    assert "-o/--output" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["report", "--help"])
    assert exc.value.code == 0
    assert "examples:" in capsys.readouterr().out


def test_write_html_report_and_report_save_never_clobber(tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    out.write_text("mine", encoding="utf-8")
    d = layered_diagnosis()
    with pytest.raises(FileExistsError, match="already exists"):
        write_html_report([d], [], out)
    with pytest.raises(FileExistsError):
        Report(d).save(out)
    assert out.read_text(encoding="utf-8") == "mine"
    assert Report(d).save(out, force=True) == out
    assert "layered" in out.read_text(encoding="utf-8")
    assert list(tmp_path.iterdir()) == [out]  # no temporary file left behind


def test_report_from_paths_matches_the_cli(torch_runs: dict[str, Path]) -> None:
    report = Report.from_paths(torch_runs["healthy"])
    assert len(report.diagnoses) == 2 and report.errors == []
    assert '<div class="ld-report"' in report._repr_html_()
