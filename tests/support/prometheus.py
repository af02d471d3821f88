"""A real Prometheus (Debian's ``prometheus``) for the dashboard tests: started on a free
loopback port with a generated config in a temporary directory, queried through its HTTP API,
stopped by PID."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from .procutil import HOST, Process, free_port

PROMETHEUS = "/usr/bin/prometheus"


class PrometheusServer:
    """Scrapes ``targets`` (HOST:PORT) every ``interval`` seconds."""

    def __init__(self, targets: list, interval: float = 1.0, metrics_path: str = "/metrics") -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="uws-py-prometheus-"))
        self.port = free_port()
        config = {
            "global": {"scrape_interval": f"{round(interval * 1000)}ms", "evaluation_interval": f"{round(interval * 1000)}ms"},
            "scrape_configs": [{"job_name": "uws-py", "metrics_path": metrics_path,
                                "static_configs": [{"targets": list(targets)}]}],
        }
        (self.workdir / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
        self.process = Process([
            shutil.which("prometheus") or PROMETHEUS,
            f"--config.file={self.workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address={HOST}:{self.port}",
            "--log.level=warn",
        ])
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(f"http://{HOST}:{self.port}/-/ready", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if self.process.popen.poll() is not None or time.monotonic() > deadline:
                stderr = self.process.stderr_text()[-2000:]
                self.stop()
                raise AssertionError(f"prometheus did not become ready: {stderr}")
            time.sleep(0.1)

    def api(self, endpoint: str, **params: str) -> Any:
        """``/api/v1/<endpoint>`` with ``params``; the ``data`` of a successful answer."""
        url = f"http://{HOST}:{self.port}/api/v1/{endpoint}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                answer = json.load(response)
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{endpoint} {params}: {exc.code} {exc.read()[:500]!r}") from None
        assert answer["status"] == "success", answer
        return answer["data"]

    def query(self, expression: str) -> list:
        """The instant vector (or scalar) of ``expression`` now."""
        return self.api("query", query=expression)["result"]

    def stop(self) -> None:
        """Stops the process (SIGTERM, then SIGKILL) and removes its directory."""
        self.process.stop(grace=5.0)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "PrometheusServer":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()
