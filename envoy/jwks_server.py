#!/usr/bin/env python3
"""JWKS endpoint for the demo (stdlib only).

  GET /jwks.json                         the JWKS file (--jwks-file), read on every request
                                         so a rotated file is served without a restart
  GET /.well-known/openid-configuration  an OpenID Connect discovery document whose
                                         jwks_uri points at /jwks.json
"""
import argparse
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))


class JwksHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "jwks"

    def _send(self, status, body, ctype="application/json"):
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/jwks.json":
            try:
                with open(self.server.jwks_file, "rb") as f:
                    body = f.read()
            except OSError as e:
                return self._send(500, json.dumps({"error": str(e)}).encode())
            return self._send(200, body)
        if path == "/.well-known/openid-configuration":
            base = self.server.issuer.rstrip("/")
            host = self.headers.get("host") or f"127.0.0.1:{self.server.server_address[1]}"
            doc = {"issuer": base, "jwks_uri": f"http://{host}/jwks.json",
                   "id_token_signing_alg_values_supported": ["RS256"]}
            return self._send(200, json.dumps(doc).encode())
        return self._send(404, b'{"error":"not found"}')

    do_HEAD = do_GET

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("jwks: " + (fmt % args) + "\n")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8082)
    ap.add_argument("--jwks-file", default=os.path.join(HERE, "demo-keys", "remote-jwks.json"))
    ap.add_argument("--issuer", default="https://remote.demo.local")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    srv = Server((args.host, args.port), JwksHandler)
    srv.jwks_file, srv.issuer, srv.verbose = args.jwks_file, args.issuer, args.verbose
    print(f"jwks server on {args.host}:{srv.server_address[1]} serving {args.jwks_file}", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
