"""`lossdoctor check MODULE:FUNCTION`: output formats, exit statuses, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lossdoctor.cli import main

BUILD = '''
import numpy as np
import torch
from torch import nn
from sklearn.datasets import load_digits

def data():
    d = load_digits()
    x = ((d.data - d.data.mean(0)) / (d.data.std(0) + 1e-6)).astype(np.float32)
    return x[:300], d.target[:300]

def healthy():
    torch.manual_seed(0)
    x, y = data()
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    return {"model": model, "x": x, "y": y, "loss": nn.CrossEntropyLoss()}

def broken():
    torch.manual_seed(0)
    x, y = data()
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10), nn.Softmax(1))
    return {"model": model, "x": x, "y": y, "loss": nn.CrossEntropyLoss()}

def not_a_model():
    return (1, 2, 3)
'''


@pytest.fixture(scope="module")
def build_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    path = tmp_path_factory.mktemp("build") / "build_check.py"
    path.write_text(BUILD)
    return path


def test_text_and_json(build_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", f"{build_file}:healthy", "--checks", "outputs,labels"]) == 0
    assert "passed: labels, outputs" in capsys.readouterr().out
    code = main(["check", f"{build_file}:broken", "--format", "json", "--checks", "outputs"])
    assert code == 1
    doc = json.loads(capsys.readouterr().out)
    assert [f["code"] for f in doc["check"]["findings"]] == ["logits-probabilities-mismatch"]


@pytest.mark.parametrize(("target", "message"), [
    ("nocolon", "expected MODULE:FUNCTION"),
    ("no_such_module_xyz:build", "cannot import module"),
    ("{file}:missing", "has no function 'missing'"),
    ("{file}:not_a_model", "needs a Keras model or a torch.nn.Module"),
])
def test_bad_targets_exit_2_with_one_line(build_file: Path, capsys: pytest.CaptureFixture[str],
                                          target: str, message: str) -> None:
    assert main(["check", target.format(file=build_file)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("lossdoctor: check: ")


def test_unknown_check_name(build_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", f"{build_file}:healthy", "--checks", "nope"]) == 2
    assert "unknown check nope" in capsys.readouterr().err


def test_html_page_and_no_overwrite(build_file: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    page = tmp_path / "check.html"
    target = f"{build_file}:broken"
    assert main(["check", target, "--checks", "outputs", "--html", str(page)]) == 1
    assert "logits-probabilities-mismatch" in page.read_text(encoding="utf-8")
    page.write_text("keep me")
    assert main(["check", target, "--checks", "outputs", "--html", str(page)]) == 2
    assert page.read_text() == "keep me"
    capsys.readouterr()
