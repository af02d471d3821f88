"""tests/packaging imports the helpers in tests/ (tlsutil) the way tests/integration does; this
file goes when those helpers move into the tests/support/ package."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
