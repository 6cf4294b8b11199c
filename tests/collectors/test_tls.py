"""Connections to exchanges: TLS 1.3 at least (EXCHANGE_TLS_MIN_VERSION relaxes it), and
plaintext only to loopback, on the WebSocket path, the REST path and in the configuration."""

import datetime
import json
import socket
import ssl
import threading
import urllib.error
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from collectors.config.schema import ConfigError, parse_exchange_config
from collectors.exchanges.rest import get_json
from collectors.frames import open_socket
from collectors.tls import PlaintextRefused, is_loopback


@pytest.fixture
def certificate(tmp_path, monkeypatch):
    """A self-signed certificate for localhost, trusted by this process (SSL_CERT_FILE)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))
    return cert_file, key_file


def server_context(certificate, highest: ssl.TLSVersion) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = highest
    return context


class TlsServer:
    """Accepts TLS connections on loopback and completes their handshakes."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            try:
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except OSError:
                pass

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def tls_server(certificate):
    servers = []

    def start(highest: ssl.TLSVersion) -> TlsServer:
        servers.append(TlsServer(server_context(certificate, highest)))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def test_a_websocket_connection_to_an_exchange_speaks_tls_1_3(tls_server):
    server = tls_server(ssl.TLSVersion.TLSv1_3)
    sock = open_socket(f"wss://localhost:{server.port}/ws/v5/public", 5)
    try:
        assert sock.version() == "TLSv1.3"
    finally:
        sock.close()


def test_a_websocket_server_that_offers_only_tls_1_2_is_refused(tls_server):
    server = tls_server(ssl.TLSVersion.TLSv1_2)
    with pytest.raises(ssl.SSLError):
        open_socket(f"wss://localhost:{server.port}/ws/v5/public", 5)


def test_the_setting_relaxes_the_minimum_to_tls_1_2(tls_server, settings):
    settings.EXCHANGE_TLS_MIN_VERSION = "1.2"
    server = tls_server(ssl.TLSVersion.TLSv1_2)
    sock = open_socket(f"wss://localhost:{server.port}/ws/v5/public", 5)
    try:
        assert sock.version() == "TLSv1.2"
    finally:
        sock.close()


class Answer(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"code": "0", "data": []}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def https_server(certificate):
    servers = []

    def start(highest: ssl.TLSVersion) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
        server.socket = server_context(certificate, highest).wrap_socket(
            server.socket, server_side=True
        )
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return f"https://localhost:{server.server_port}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_the_rest_client_speaks_tls_1_3_and_refuses_tls_1_2(https_server, settings):
    assert get_json(https_server(ssl.TLSVersion.TLSv1_3), "/api", {}, 5) == {
        "code": "0",
        "data": [],
    }
    old = https_server(ssl.TLSVersion.TLSv1_2)
    with pytest.raises(urllib.error.URLError) as refused:
        get_json(old, "/api", {}, 5)
    assert isinstance(refused.value.reason, ssl.SSLError)
    settings.EXCHANGE_TLS_MIN_VERSION = "1.2"
    assert get_json(old, "/api", {}, 5)["code"] == "0"


@pytest.mark.parametrize(
    "url", ["ws://ws.okx.com:8443/ws/v5/public", "ws://10.0.0.5:8765/ws", "ws://[2001:db8::1]/"]
)
def test_plaintext_websockets_to_a_host_that_is_not_this_machine_are_refused(url):
    with pytest.raises(PlaintextRefused, match=r"use wss://"):
        open_socket(url, 1)


def test_plaintext_rest_to_a_host_that_is_not_this_machine_is_refused():
    with pytest.raises(PlaintextRefused, match=r"use https://"):
        get_json("http://www.okx.com", "/api/v5/public/instruments", {}, 1)


def test_loopback_hosts_are_the_simulators():
    assert all(map(is_loopback, ["127.0.0.1", "127.1.2.3", "localhost", "::1", "[::1]"]))
    assert not any(map(is_loopback, ["10.0.0.1", "ws.okx.com", "", None, "localhost.example"]))


def test_the_configuration_refuses_plaintext_to_an_exchange_with_a_clear_error():
    config = {
        "exchange": "okx",
        "connection": {
            "public_ws_url": "ws://ws.okx.com:8443/ws/v5/public",
            "rest_url": "http://www.okx.com",
        },
        "trading_pairs": [{"symbol": "BTC-USDT", "data_types": ["trade"]}],
    }
    with pytest.raises(ConfigError) as refused:
        parse_exchange_config(config)
    assert refused.value.errors == [
        "connection.public_ws_url: plaintext ws:// is allowed only to a loopback host "
        "(a local simulator), not 'ws.okx.com': use wss:// (TLS)",
        "connection.rest_url: plaintext http:// is allowed only to a loopback host "
        "(a local simulator), not 'www.okx.com': use https:// (TLS)",
    ]
    config["connection"] = {
        "public_ws_url": "ws://127.0.0.1:8765/ws/v5/public",
        "rest_url": "http://localhost:8765",
    }
    assert parse_exchange_config(config).public_ws_url == "ws://127.0.0.1:8765/ws/v5/public"
