"""Requests as they come over the wire, piece by piece: HTTP/1.1 with a
Content-Length body or chunked (with trailers), and HTTP/2 (prior knowledge,
cleartext) with several DATA frames and trailers, each piece sent after a pause
so that Envoy sees them as separate reads and callbacks.

    send(port, "POST", "/rows", headers, Body(parts=[b"a" * 10, b"b" * 10], gap=0.05),
         protocol="h1")             # "h1" (Content-Length), "h1-chunked", "h2"
    Body(parts, trailers=[("grpc-status-ish", "0")])  # trailers: h1-chunked and h2

Answers are harness.Response values; a connection the peer closed without an
answer is Response(0, ...) with the error in the body.
"""
from __future__ import annotations

import socket
import time
from typing import List, NamedTuple, Sequence, Tuple

import h2.config
import h2.connection
import h2.events

from harness import Headers, Response


class Body(NamedTuple):
    parts: Sequence[bytes] = ()
    trailers: Sequence[Tuple[str, str]] = ()
    gap: float = 0.05  # seconds between pieces

    @property
    def data(self) -> bytes:
        return b"".join(self.parts)


def send(port: int, method: str, path: str, headers: Sequence[Tuple[str, str]], body: Body = Body(),
         protocol: str = "h1", timeout: float = 15.0) -> Response:
    if protocol == "h2":
        return _send_h2(port, method, path, headers, body, timeout)
    return _send_h1(port, method, path, headers, body, protocol == "h1-chunked", timeout)


def _send_h1(port, method, path, headers, body: Body, chunked: bool, timeout: float) -> Response:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        lines = [f"{method} {path} HTTP/1.1", "host: api.test"]
        lines += [f"{k}: {v}" for k, v in headers]
        if chunked:
            lines.append("transfer-encoding: chunked")
        elif body.parts:
            lines.append(f"content-length: {len(body.data)}")
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        for part in body.parts:
            time.sleep(body.gap)
            if chunked:
                sock.sendall(b"%x\r\n%s\r\n" % (len(part), part))
            else:
                sock.sendall(part)
        if chunked:
            time.sleep(body.gap)
            trailer = "".join(f"{k}: {v}\r\n" for k, v in body.trailers).encode()
            sock.sendall(b"0\r\n" + trailer + b"\r\n")
        return _read_h1(sock)
    except OSError as e:
        return Response(0, Headers([]), f"connection error: {e}".encode())
    finally:
        sock.close()


def _read_h1(sock: socket.socket) -> Response:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            return Response(0, Headers([]), b"connection closed without an answer: " + buf)
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    pairs = [tuple(x.strip() for x in line.split(":", 1)) for line in header_lines if ":" in line]
    headers = Headers(pairs)  # type: ignore[arg-type]
    length = int(headers.get("content-length") or 0)
    if "chunked" in (headers.get("transfer-encoding") or ""):
        while not rest.endswith(b"0\r\n\r\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        body, data = b"", rest
        while data:
            size_line, data = data.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            body, data = body + data[:size], data[size + 2:]
        rest = body
    else:
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
    return Response(int(status_line.split()[1]), headers, rest[:length] if length else rest)


def _send_h2(port, method, path, headers, body: Body, timeout: float) -> Response:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    try:
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        stream = conn.get_next_available_stream_id()
        request = [(":method", method), (":path", path), (":authority", "api.test"), (":scheme", "http")]
        request += [(k.lower(), v) for k, v in headers]
        ends_with_headers = not body.parts and not body.trailers
        conn.send_headers(stream, request, end_stream=ends_with_headers)
        sock.sendall(conn.data_to_send())
        for i, part in enumerate(body.parts):
            time.sleep(body.gap)
            last = i == len(body.parts) - 1 and not body.trailers
            _send_h2_data(sock, conn, stream, part, last)
        if body.trailers:
            time.sleep(body.gap)
            conn.send_headers(stream, [(k.lower(), v) for k, v in body.trailers], end_stream=True)
            sock.sendall(conn.data_to_send())
        return _read_h2(sock, conn, stream)
    except OSError as e:
        return Response(0, Headers([]), f"connection error: {e}".encode())
    finally:
        sock.close()


def _send_h2_data(sock, conn, stream: int, data: bytes, end_stream: bool) -> None:
    """Send data as flow control allows, in frames of at most the peer's frame size."""
    while True:
        window = min(conn.local_flow_control_window(stream), conn.max_outbound_frame_size)
        if data and window <= 0:
            _pump(sock, conn)  # wait for WINDOW_UPDATE
            continue
        piece, data = data[:window], data[window:]
        conn.send_data(stream, piece, end_stream=end_stream and not data)
        sock.sendall(conn.data_to_send())
        if not data:
            return


def _pump(sock, conn) -> List[h2.events.Event]:
    chunk = sock.recv(65536)
    if not chunk:
        raise ConnectionError("closed")
    events = conn.receive_data(chunk)
    out = conn.data_to_send()
    if out:
        sock.sendall(out)
    return events


def _read_h2(sock, conn, stream: int) -> Response:
    status, headers, body = 0, [], b""
    while True:
        try:
            events = _pump(sock, conn)
        except ConnectionError:
            return Response(status, Headers(headers), body or b"connection closed")
        for event in events:
            if isinstance(event, h2.events.ResponseReceived) and event.stream_id == stream:
                for k, v in event.headers:
                    k = k.decode() if isinstance(k, bytes) else k
                    v = v.decode() if isinstance(v, bytes) else v
                    if k == ":status":
                        status = int(v)
                    else:
                        headers.append((k, v))
            elif isinstance(event, h2.events.DataReceived) and event.stream_id == stream:
                body += event.data
                conn.acknowledge_received_data(event.flow_controlled_length, stream)
                sock.sendall(conn.data_to_send())
            elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)) and event.stream_id == stream:
                if isinstance(event, h2.events.StreamReset) and not status:
                    return Response(0, Headers([]), f"stream reset ({event.error_code})".encode())
                return Response(status, Headers(headers), body)
