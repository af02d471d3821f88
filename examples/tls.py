"""TLS: the same port serves wss:// and https:// (OpenSSL, TLS 1.2 and 1.3).

    python examples/tls.py --cert cert.pem --key key.pem --port 8443

For a try on your machine, make a self-signed pair first:

    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
        -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
        -keyout key.pem -out cert.pem
    curl --cacert cert.pem https://127.0.0.1:8443/

The files may also come from UWS_TLS_CERT / UWS_TLS_KEY (and UWS_TLS_PASSPHRASE).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Optional, Union

from uws_py import App, HttpRequest, HttpResponse, OpCode, SSLOptions, WebSocket


def on_message(ws: WebSocket, message: Union[str, bytes], opcode: OpCode) -> None:
    ws.send(message, opcode)


def hello(res: HttpResponse, req: HttpRequest) -> None:
    res.end("hello over TLS\n")


def build_app(cert_file: str, key_file: str, passphrase: Optional[str] = None) -> App:
    """A missing file raises OSError; a wrong passphrase or a key that does not match the
    certificate raises ValueError, here, before anything listens."""
    app = App(ssl=SSLOptions(cert_file=cert_file, key_file=key_file, passphrase=passphrase))
    app.ws("/*", {"message": on_message})
    app.get("/", hello)
    return app


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="wss:// and https:// on one port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8443")))
    parser.add_argument("--cert", default=os.environ.get("UWS_TLS_CERT"), help="PEM certificate chain, leaf first")
    parser.add_argument("--key", default=os.environ.get("UWS_TLS_KEY"), help="PEM private key")
    args = parser.parse_args(argv)
    if not args.cert or not args.key:
        parser.error("--cert and --key (or UWS_TLS_CERT and UWS_TLS_KEY) are required")
    app = build_app(args.cert, args.key, os.environ.get("UWS_TLS_PASSPHRASE"))
    app.listen(args.port, host=args.host)
    print(f"listening on wss://{args.host}:{app.port}/ and https://{args.host}:{app.port}/", flush=True)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: app.close())
    app.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
