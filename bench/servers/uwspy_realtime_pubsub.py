"""uws-py full realtime stack for the fan-out on a plain vs a history topic (bench/history.py):
RealtimeServer without auth or rate limit; clients SUBSCRIBE and PUBLISH on topic "bench"
(bench/.build/loadgen --mode fanout --topic bench).

usage: python uwspy_realtime_pubsub.py PORT [--history] [--broker redis://...]
--history makes "bench" (size 100) and "hist.*" (size 1000) history topics, ttl 300 s;
--broker goes through Redis.
Prints `listening PORT`.
"""

import sys

from uws_py import RealtimeServer
from uws_py.broker.redis import RedisBroker


def main() -> None:
    args = sys.argv[2:]
    broker = RedisBroker(args[args.index("--broker") + 1]) if "--broker" in args else None
    server = RealtimeServer(path="/realtime", rate_limit=None, idle_timeout=0, compression=False, broker=broker)
    if "--history" in args:
        server.history("bench", size=100, ttl=300)
        server.history("hist.*", size=1000, ttl=300)
    server.listen(port=int(sys.argv[1]), host="127.0.0.1")
    print(f"listening {server.port}", flush=True)
    server.run_forever()


if __name__ == "__main__":
    main()
