"""The documentation site builds in strict mode (broken links, bad docstrings, missing pages fail)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MKDOCS = Path(sys.executable).with_name("mkdocs")


@pytest.mark.skipif(
    not MKDOCS.exists() and shutil.which("mkdocs") is None, reason="mkdocs (the docs extra) is not installed"
)
def test_docs_build_strict(tmp_path):
    mkdocs = str(MKDOCS) if MKDOCS.exists() else shutil.which("mkdocs")
    done = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    site = tmp_path / "site"
    for page in ("evaluation", "results", "api"):
        assert (site / page / "index.html").is_file()
    api = (site / "api" / "index.html").read_text()
    # the reference is generated from the docstrings
    assert "evaluate_distilled" in api and "Score a distilled set" in api
