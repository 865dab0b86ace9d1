"""An OAuth 2.0 token introspection endpoint (RFC 7662) built on Authlib's
IntrospectionEndpoint, for the integration tests: a real, independent
implementation of the protocol (client authentication, the form, the answer).

    with IntrospectionServer(clients={"filter id": "s3cr&t"}) as idp:
        token = idp.issue(sub="alice", scope="orders:read", expires_in=600)
        ... Envoy's `jwks` cluster at idp.port, introspection.path "/introspect"
        idp.revoke(token); idp.hits(token)

Misbehaviours for the failure tests: idp.misbehave(delay=1.5), (status=500),
(body=b"garbage"), (body=b"x" * 100_000); idp.misbehave() restores it.
"""
from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Optional
from urllib.parse import parse_qsl

from authlib.oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin, OAuth2Request, TokenMixin
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc7662 import IntrospectionEndpoint

ISSUER = "https://idp.test"


class Client(ClientMixin):
    def __init__(self, client_id: str, secret: str):
        self.client_id, self.secret = client_id, secret

    def get_client_id(self):
        return self.client_id

    def check_client_secret(self, client_secret):
        return secrets.compare_digest(client_secret, self.secret)

    def check_endpoint_auth_method(self, method, endpoint):
        return True


class Token(TokenMixin):
    def __init__(self, value: str, claims: dict, expires_at: Optional[int]):
        self.value, self.claims, self.expires_at, self.revoked = value, claims, expires_at, False

    def get_scope(self):
        return self.claims.get("scope")

    def get_expires_in(self):
        return None if self.expires_at is None else self.expires_at - int(time.time())

    def is_expired(self):
        return self.expires_at is not None and time.time() >= self.expires_at

    def is_revoked(self):
        return self.revoked


class Request(OAuth2Request):
    def __init__(self, method: str, headers: Dict[str, str], form: Dict[str, str]):
        # Authlib wants https URIs; the endpoint's own address does not matter here.
        super().__init__(method, f"{ISSUER}/introspect", headers=headers)
        self._form = form
        self.payload = BasicOAuth2Payload(form)

    @property
    def form(self):
        return self._form

    @property
    def args(self):
        return {}


class Server(AuthorizationServer):
    def __init__(self, idp: "IntrospectionServer"):
        super().__init__()
        self.idp = idp
        self.clients = {cid: Client(cid, secret) for cid, secret in idp.client_secrets.items()}

    def query_client(self, client_id):
        return self.clients.get(client_id)

    def save_token(self, token, request):
        raise NotImplementedError

    def send_signal(self, name, *args, **kwargs):
        pass

    def create_oauth2_request(self, request):
        return request

    def handle_response(self, status, body, headers):
        return status, body, headers


class Endpoint(IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "client_bearer"]

    def query_token(self, token_string, token_type_hint):
        return self.server.idp.tokens.get(token_string)

    def check_permission(self, token, client, request):
        return True

    def introspect_token(self, token):
        return dict(token.claims, active=True)


class IntrospectionServer:
    """The endpoint on a loopback port, in threads; `hits` counts introspections per token."""

    def __init__(self, clients: Dict[str, str]):
        self.client_secrets = dict(clients)
        self.tokens: Dict[str, Token] = {}
        self._hits: Dict[str, int] = {}
        self.calls: List[dict] = []  # every request: method, content type, authorization, form
        self._lock = threading.Lock()
        self.delay, self.status, self.body = 0.0, None, None
        self.authorization_server = Server(self)
        self.authorization_server.register_client_auth_method("client_bearer", self._authenticate_bearer)
        self.authorization_server.register_endpoint(Endpoint)
        self.httpd = self._bind()
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def _authenticate_bearer(self, query_client, request):
        """A client authenticated by a bearer credential (RFC 7662 2.1 allows any): its secret."""
        auth = request.headers.get("Authorization", "")
        if auth.lower().startswith("bearer "):
            for client in self.authorization_server.clients.values():
                if client.check_client_secret(auth[7:]):
                    return client
        return None

    # ---- tokens ------------------------------------------------------------

    def issue(self, expires_in: Optional[int] = 600, **claims) -> str:
        """An opaque token (no dots: not a JWS) whose introspection answer carries `claims`
        and, unless None, `exp` and `iat`."""
        value = "op_" + secrets.token_urlsafe(24).replace("-", "x").replace("_", "y")
        now = int(time.time())
        claims = dict(claims)
        expires_at = None
        if expires_in is not None:
            expires_at = now + expires_in
            claims.setdefault("exp", expires_at)
            claims.setdefault("iat", now)
        self.tokens[value] = Token(value, claims, expires_at)
        return value

    def revoke(self, token: str) -> None:
        self.tokens[token].revoked = True

    def hits(self, token: Optional[str] = None) -> int:
        with self._lock:
            return self._hits.get(token, 0) if token is not None else sum(self._hits.values())

    def misbehave(self, delay: float = 0.0, status: Optional[int] = None, body: Optional[bytes] = None) -> None:
        self.delay, self.status, self.body = delay, status, body

    # ---- HTTP --------------------------------------------------------------

    def _bind(self) -> ThreadingHTTPServer:
        idp = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length).decode()
                form = dict(parse_qsl(raw, keep_blank_values=True))
                with idp._lock:
                    token = form.get("token", "")
                    idp._hits[token] = idp._hits.get(token, 0) + 1
                    idp.calls.append({"content_type": self.headers.get("content-type"),
                                      "authorization": self.headers.get("authorization"), "form": form})
                if idp.delay:
                    time.sleep(idp.delay)
                if idp.status is not None or idp.body is not None:
                    self._reply(idp.status or 200, idp.body or b"", "application/json")
                    return
                request = Request("POST", self.headers, form)  # case-insensitive, as Authlib reads them
                status, body, _ = idp.authorization_server.create_endpoint_response("introspection", request)
                payload = body if isinstance(body, (bytes, str)) else json.dumps(body)
                self._reply(status, payload.encode() if isinstance(payload, str) else payload, "application/json")

            def _reply(self, status: int, body: bytes, content_type: str):
                try:
                    self.send_response(status)
                    self.send_header("content-type", content_type)
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # Envoy gave up (timeout)

            def log_message(self, fmt, *args):
                pass

        # A backlog for every request of a test arriving at once (the default, 5, drops
        # connections: Envoy then answers the filter's call 503 itself).
        Backlogged = type("Backlogged", (ThreadingHTTPServer,), {"request_queue_size": 128})
        server = Backlogged(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        return server

    def __enter__(self) -> "IntrospectionServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def basic(client_id: str, secret: str) -> str:
    """What RFC 6749 2.3.1 has a client send (for tests that check the filter's own)."""
    from urllib.parse import quote
    return "Basic " + base64.b64encode(f"{quote(client_id, safe='')}:{quote(secret, safe='')}".encode()).decode()
