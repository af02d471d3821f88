"""What `npm pack` puts in the JavaScript client's package: the client, its types, the
README and the project's license (package.json says Apache-2.0; the text must ship too)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "clients" / "js"


def test_npm_pack_ships_the_projects_license() -> None:
    result = subprocess.run(["npm", "pack", "--dry-run", "--json", "--ignore-scripts", "--offline"], cwd=PACKAGE,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    (packed,) = json.loads(result.stdout)
    files = {entry["path"] for entry in packed["files"]}
    assert {"LICENSE", "README.md", "package.json", "src/index.js", "src/index.d.ts"} <= files, sorted(files)
    assert (PACKAGE / "LICENSE").read_bytes() == (ROOT / "LICENSE").read_bytes()
    assert json.loads((PACKAGE / "package.json").read_text())["license"] == "Apache-2.0"
    assert "Apache License" in (PACKAGE / "LICENSE").read_text() and "Version 2.0" in (PACKAGE / "LICENSE").read_text()
