"""Regression: the JS client's package.json said MIT while the project (pyproject.toml,
LICENSE) is Apache-2.0."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_js_client_license_matches_the_project() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]
    package = json.loads((ROOT / "clients/js/package.json").read_text())
    lock = json.loads((ROOT / "clients/js/package-lock.json").read_text())
    assert package["license"] == project
    assert lock["packages"][""]["license"] == project


def test_license_file_is_the_declared_license() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]
    assert project == "Apache-2.0"
    assert (ROOT / "LICENSE").read_text().lstrip().startswith("Apache License")
