"""TLS options of issue 12: SNI (App.add_server_name), the cipher lists and the minimum
version on SSLOptions, client certificates (ca_file), and unreadable files raising the OSError
the OS gives."""

from __future__ import annotations

import os
import socket
import ssl
from pathlib import Path
from typing import Optional

import pytest

from tests.support.harness import HOST, ServerPool
from tests.support.tlsutil import Issued, common_name, issue
from tests.support.wsclient import Op, connect, insecure_tls_context
from uws_py import App, SSLOptions


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict:
    """A CA, a client certificate it signed, a stranger's self-signed client certificate, and
    server certificates for the default name and two SNI names."""
    directory = tmp_path_factory.mktemp("pki")
    ca = issue(directory, "test-ca", is_ca=True)
    return {
        "ca": ca,
        "client": issue(directory, "client", issuer=ca),
        "stranger": issue(directory, "stranger"),
        "default": issue(directory, "default.test", hostnames=("default.test", "localhost")),
        "alpha": issue(directory, "alpha.test", hostnames=("alpha.test",)),
        "beta": issue(directory, "beta.test", hostnames=("beta.test", "*.beta.test")),
    }


def options(cert: Issued, **extra) -> SSLOptions:
    return SSLOptions(str(cert.cert_path), str(cert.key_path), **extra)


@pytest.fixture
def start_server(recorder):
    pool = ServerPool()
    yield pool.start
    pool.stop_all()


def served_certificate(port: int, server_name: Optional[str], context: Optional[ssl.SSLContext] = None) -> str:
    """The common name of the certificate the server presents for server_name (SNI)."""
    context = context or insecure_tls_context()
    with socket.create_connection((HOST, port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=server_name) as tls:
            return common_name(tls.getpeercert(binary_form=True))


def handshake_fails(port: int, context: ssl.SSLContext) -> bool:
    """Whether a wss:// connection with this client context fails. With TLS 1.3 a refused
    client certificate shows only after the handshake, on the first read."""
    try:
        with connect(HOST, port, tls=context) as client:
            client.send_text("hello")
            client.recv_message(timeout=3)
    except (ssl.SSLError, ConnectionError, OSError, AssertionError, EOFError):
        return True
    except Exception as error:  # the test client's own "connection closed" errors
        return "closed" in str(error).lower() or "refused" in str(error).lower()
    return False


def assert_echoes(port: int, context: ssl.SSLContext) -> None:
    with connect(HOST, port, tls=context) as client:
        client.send_text("over tls")
        assert client.recv_message() == (Op.TEXT, b"over tls")


# --- SNI ------------------------------------------------------------------------------------

def test_add_server_name_serves_a_certificate_per_name(start_server, recorder, pki):
    def setup(app: App) -> None:
        app.add_server_name("alpha.test", options(pki["alpha"]))
        app.add_server_name("*.beta.test", options(pki["beta"]))

    server = start_server(recorder.behavior(), setup=setup, ssl=options(pki["default"]))
    assert served_certificate(server.port, "alpha.test") == "alpha.test"
    assert served_certificate(server.port, "ALPHA.test") == "alpha.test"  # names are case-insensitive
    assert served_certificate(server.port, "www.beta.test") == "beta.test"  # one-label wildcard
    assert served_certificate(server.port, "a.b.beta.test") == "default.test"
    assert served_certificate(server.port, "unknown.test") == "default.test"
    assert served_certificate(server.port, None) == "default.test"


def test_add_server_name_verifies_against_each_names_certificate(start_server, recorder, pki):
    server = start_server(recorder.behavior(), setup=lambda app: app.add_server_name("alpha.test", options(pki["alpha"])),
                          ssl=options(pki["default"]))
    strict = ssl.create_default_context(cafile=str(pki["alpha"].cert_path))
    assert served_certificate(server.port, "alpha.test", strict) == "alpha.test"
    with connect(HOST, server.port, tls=insecure_tls_context()) as client:
        client.send_text("sni")
        assert client.recv_message() == (Op.TEXT, b"sni")


def test_add_server_name_without_tls_raises(pki):
    with pytest.raises(RuntimeError, match="TLS"):
        App().add_server_name("alpha.test", options(pki["alpha"]))


def test_add_server_name_with_a_missing_file_raises_file_not_found(pki, tmp_path):
    app = App(ssl=options(pki["default"]))
    with pytest.raises(FileNotFoundError):
        app.add_server_name("alpha.test", SSLOptions(str(tmp_path / "absent.pem"), str(pki["alpha"].key_path)))


# --- ciphers and minimum version --------------------------------------------------------------

def tls12_client(cipher: str) -> ssl.SSLContext:
    context = insecure_tls_context(ssl.TLSVersion.TLSv1_2)
    context.set_ciphers(cipher)
    return context


def test_ciphers_limit_what_a_tls12_client_may_use(start_server, recorder, pki):
    server = start_server(recorder.behavior(), ssl=options(pki["default"], ciphers="ECDHE-ECDSA-AES128-GCM-SHA256"))
    assert handshake_fails(server.port, tls12_client("ECDHE-ECDSA-CHACHA20-POLY1305"))
    context = tls12_client("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305")
    with socket.create_connection((HOST, server.port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=HOST) as tls:
            assert tls.cipher()[0] == "ECDHE-ECDSA-AES128-GCM-SHA256"


def test_ciphersuites_pick_the_tls13_suite(start_server, recorder, pki):
    server = start_server(recorder.behavior(), ssl=options(pki["default"], ciphersuites="TLS_CHACHA20_POLY1305_SHA256"))
    with socket.create_connection((HOST, server.port), timeout=5) as raw:
        with insecure_tls_context(ssl.TLSVersion.TLSv1_3).wrap_socket(raw, server_hostname=HOST) as tls:
            assert tls.cipher()[0] == "TLS_CHACHA20_POLY1305_SHA256"


@pytest.mark.parametrize("field", ["ciphers", "ciphersuites"])
def test_a_cipher_string_selecting_nothing_raises_value_error(pki, field):
    with pytest.raises(ValueError, match="cipher"):
        App(ssl=options(pki["default"], **{field: "NOT-A-CIPHER"}))


@pytest.mark.parametrize("minimum", ["TLSv1.3", ssl.TLSVersion.TLSv1_3], ids=["str", "enum"])
def test_minimum_version_13_refuses_a_tls12_client(start_server, recorder, pki, minimum):
    server = start_server(recorder.behavior(), ssl=options(pki["default"], minimum_version=minimum))
    assert handshake_fails(server.port, insecure_tls_context(ssl.TLSVersion.TLSv1_2))
    assert_echoes(server.port, insecure_tls_context(ssl.TLSVersion.TLSv1_3))


def test_default_minimum_version_accepts_tls12(start_server, recorder, pki):
    server = start_server(recorder.behavior(), ssl=options(pki["default"]))
    assert_echoes(server.port, insecure_tls_context(ssl.TLSVersion.TLSv1_2))


@pytest.mark.parametrize("minimum", ["TLSv1.1", "1.3", ssl.TLSVersion.TLSv1_1])
def test_unsupported_minimum_version_raises_value_error(pki, minimum):
    with pytest.raises(ValueError, match="TLSv1"):
        App(ssl=options(pki["default"], minimum_version=minimum))


# --- client certificates (ca_file) -------------------------------------------------------------

def client_context(cert: Optional[Issued], version: ssl.TLSVersion) -> ssl.SSLContext:
    context = insecure_tls_context(version)
    if cert is not None:
        context.load_cert_chain(str(cert.cert_path), str(cert.key_path))
    return context


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["tls1.2", "tls1.3"])
def test_ca_file_requires_a_client_certificate_it_signed(start_server, recorder, pki, version):
    server = start_server(recorder.behavior(), ssl=options(pki["default"], ca_file=str(pki["ca"].cert_path)))
    assert handshake_fails(server.port, client_context(None, version)), "a client without a certificate got in"
    assert handshake_fails(server.port, client_context(pki["stranger"], version)), "a certificate from another CA got in"
    assert_echoes(server.port, client_context(pki["client"], version))
    assert recorder.opens.qsize() == 1, "only the client with a signed certificate opened a WebSocket"


# --- unreadable files --------------------------------------------------------------------------

def unreadable_path(tmp_path: Path) -> str:
    """A path that exists but this process may not read: a mode-000 file, or for root (which reads
    any such file) a write-only /proc/sys entry, where the mode applies to root as well."""
    if os.geteuid() != 0:
        path = tmp_path / "unreadable.pem"
        path.write_text("secret")
        path.chmod(0)
        return str(path)
    path = "/proc/sys/vm/compact_memory"
    with pytest.raises(PermissionError):
        open(path, "rb").close()
    return path


@pytest.mark.parametrize("which", ["cert_file", "key_file", "ca_file"])
def test_missing_tls_file_raises_file_not_found_error(pki, tmp_path, which):
    missing = str(tmp_path / "absent.pem")
    fields = {"cert_file": str(pki["default"].cert_path), "key_file": str(pki["default"].key_path), which: missing}
    with pytest.raises(FileNotFoundError) as raised:
        App(ssl=SSLOptions(**fields))
    assert missing in str(raised.value)


@pytest.mark.parametrize("which", ["cert_file", "key_file", "ca_file"])
def test_unreadable_tls_file_raises_permission_error(pki, tmp_path, which):
    unreadable = unreadable_path(tmp_path)
    fields = {"cert_file": str(pki["default"].cert_path), "key_file": str(pki["default"].key_path), which: unreadable}
    with pytest.raises(PermissionError) as raised:
        App(ssl=SSLOptions(**fields))
    assert unreadable in str(raised.value)
