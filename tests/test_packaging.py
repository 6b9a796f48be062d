"""Packaging: every imported package is declared, and setup.cfg's minimums are the ones CI installs."""

import ast
import configparser
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# import name -> distribution name, where they differ
DISTRIBUTIONS = {"PIL": "pillow", "yaml": "pyyaml", "sklearn": "scikit-learn"}


def requirements() -> dict[str, str]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    found = {}
    for line in config["options"]["install_requires"].split("\n"):
        if line.strip():
            # name>=minimum, optionally followed by releases excluded with !=
            name, version = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9][0-9.]*)(?:,!=[0-9.]+)*", line.strip()).groups()
            found[name.lower().replace("_", "-")] = version
    return found


def imported_packages() -> set[str]:
    names = set()
    for path in (ROOT / "gift_hf").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in ("gift_hf", "__future__")}


def test_every_imported_package_is_declared():
    declared = requirements()
    missing = {DISTRIBUTIONS.get(n, n).lower().replace("_", "-") for n in imported_packages()} - set(declared)
    assert not missing, f"imported by gift_hf but not in setup.cfg install_requires: {sorted(missing)}"


def test_setup_cfg_minimums_are_the_pinned_versions_ci_tests():
    pins = {}
    for line in (ROOT / "constraints" / "minimum.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version
    minimums = requirements()
    assert {k: pins.get(k) for k in minimums} == minimums  # every lower bound is pinned, at that version


def test_no_private_name_is_imported_across_modules():
    offenders = []
    for path in (ROOT / "gift_hf").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.level > 0 or (node.module or "").startswith("gift_hf")):
                offenders += [
                    f"{path.relative_to(ROOT)}: {alias.name}"
                    for alias in node.names
                    if alias.name.startswith("_") and not alias.name.startswith("__")
                ]
    assert not offenders, offenders
