#!/usr/bin/env python3
"""Echo upstream for the demo and the tests (stdlib only).

Answers every method and path with 200 and a JSON body describing the request as
it reached the upstream: {"method": ..., "path": ..., "headers": {name: value},
"body_length": n, "body_sha256": hex} (header names lower-cased; repeated headers
joined with ", "; the body read by Content-Length or chunked). A query parameter
`echo_delay=S` (at most 30) makes it wait S seconds first: a slow upstream.
"""
import argparse
import hashlib
import json
import re
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class EchoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "echo"
    # One write per response, sent at once: headers and body written separately would
    # meet Nagle's algorithm and the peer's delayed ACK (40 ms a response).
    wbufsize = -1
    disable_nagle_algorithm = True

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def _echo(self):
        received = self._read_body()
        delay = re.search(r"[?&]echo_delay=([0-9.]+)", self.path)
        if delay:
            time.sleep(min(float(delay.group(1)), 30.0))
        headers = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        body = json.dumps({"method": self.command, "path": self.path, "headers": headers,
                           "body_length": len(received),
                           "body_sha256": hashlib.sha256(received).hexdigest()}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _echo

    def log_message(self, fmt, *args):  # quiet
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8081)
    args = ap.parse_args(argv)
    srv = Server((args.host, args.port), EchoHandler)
    print(f"echo server on {args.host}:{srv.server_address[1]}", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
