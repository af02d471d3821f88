"""uws-py full realtime stack for scenario 8: RealtimeServer with JWT auth, rate limiting
(generous, so it measures its cost without refusing) and metrics on; an ECHO handler that
answers each request with itself (the reply carries the request's id).

usage: python uwspy_realtime.py PORT [--no-handler-metrics] [--deflate] [--compression-threshold N]
       [--tracing [--tracing-ratio R]]
(prints `listening PORT` and `token TOKEN`; --no-handler-metrics measures what handler latency
metrics cost; --deflate turns compression on: permessage-deflate, replies deflated from the
threshold, default the server's; --tracing what OpenTelemetry tracing costs: an SDK tracer
provider whose batch processor hands every span to an exporter that drops it, so span creation
and processing are measured, not a network exporter); --tracing-ratio samples that share of the
traces (ParentBased(TraceIdRatioBased(R)), the usual production setting)
"""

import sys
import time

import jwt

from uws_py import JWTAuth, RateLimit, RealtimeServer

SECRET = "bench-secret-bench-secret-bench-secret"


def tracer_provider(ratio: float):
    """An SDK TracerProvider sampling ``ratio`` of the traces, exporting to nowhere (needs
    the [otel] extra)."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    class Dropping(SpanExporter):
        def export(self, spans):
            return SpanExportResult.SUCCESS

    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(ratio)))
    provider.add_span_processor(BatchSpanProcessor(Dropping()))
    return provider


def threshold() -> dict:
    if "--compression-threshold" in sys.argv:
        return {"compression_threshold": int(sys.argv[sys.argv.index("--compression-threshold") + 1])}
    return {}


def main() -> None:
    server = RealtimeServer(
        path="/realtime",
        auth=JWTAuth(secret=SECRET),
        rate_limit=RateLimit(messages=10_000_000, per_seconds=1),
        idle_timeout=0,
        compression="--deflate" in sys.argv,
        handler_metrics="--no-handler-metrics" not in sys.argv,
        tracing=tracer_provider(float(sys.argv[sys.argv.index("--tracing-ratio") + 1])
                                if "--tracing-ratio" in sys.argv else 1.0) if "--tracing" in sys.argv else None,
        **threshold(),
    )

    @server.on("ECHO")
    def echo(client, message):
        return message

    server.listen(port=int(sys.argv[1]), host="127.0.0.1")
    token = jwt.encode({"sub": "bench", "exp": int(time.time()) + 3600}, SECRET, algorithm="HS256")
    print(f"token {token}", flush=True)
    print(f"listening {server.port}", flush=True)
    server.run_forever()


if __name__ == "__main__":
    main()
