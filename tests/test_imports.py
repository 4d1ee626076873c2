"""A missing optional dependency names the extra that brings it."""

from __future__ import annotations

import pytest

from lossdoctor._imports import try_import
from lossdoctor.errors import MissingExtraError


def test_missing_extra_names_the_install_command():
    with pytest.raises(MissingExtraError, match=r"pip install 'lossdoctor\[search\]'"):
        try_import("a_module_that_is_not_installed_anywhere", "search")


def test_present_module_is_returned():
    assert try_import("json", "core").dumps([1]) == "[1]"


def test_core_import_pulls_no_framework():
    import subprocess
    import sys

    code = (
        "import sys, lossdoctor.cli, lossdoctor.diagnosis, lossdoctor.sources;"
        "print(sorted(m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_public_names():
    import lossdoctor

    assert sorted(lossdoctor.__all__) == sorted([
        "CheckReport", "Diagnosis", "Finding", "Run", "Series", "Severity", "__version__",
        "check", "diagnose", "ensemble", "load", "lr_range_test", "search",
    ])
    for name in ("diagnose", "load", "Run", "Series", "Finding", "Severity", "Diagnosis"):
        assert getattr(lossdoctor, name) is not None
