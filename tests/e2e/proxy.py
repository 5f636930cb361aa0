"""A small reverse proxy for the sub-path test: http://127.0.0.1:<port>/airflow/... -> the api-server.

Only requests under the prefix are forwarded, with their full path (Airflow's ``[api] base_url`` makes
the api-server serve under that path itself); everything else is a 404, so a page that escapes the
sub-path fails. Redirects are passed through, not followed; Set-Cookie headers are kept one by one.
"""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade"}


class SubPathProxy:
    def __init__(self, listen_port: int, upstream_port: int, prefix: str = "/airflow"):
        self.prefix = prefix.rstrip("/")
        self.upstream_port = upstream_port
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status) seen by the proxy
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep pytest output clean
                pass

            def _forward(self):
                if not (self.path == proxy.prefix or self.path.startswith(proxy.prefix + "/")):
                    body = b"not under the proxied prefix\n"
                    self.send_response(404)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    proxy.requests.append((self.command, self.path, 404))
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                host = self.headers.get("Host", f"127.0.0.1:{listen_port}")
                headers.update({"X-Forwarded-For": self.client_address[0], "X-Forwarded-Proto": "http",
                                "X-Forwarded-Host": host, "X-Forwarded-Prefix": proxy.prefix})
                conn = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=120)
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                except OSError as e:  # upstream down or too slow: say so, as a real proxy would
                    proxy.requests.append((self.command, self.path, 502))
                    msg = f"bad gateway: {e!r}\n".encode()
                    self.send_response(502)
                    self.send_header("Content-Length", str(len(msg)))
                    self.end_headers()
                    self.wfile.write(msg)
                    return
                finally:
                    conn.close()
                proxy.requests.append((self.command, self.path, resp.status))
                self.send_response(resp.status, resp.reason)
                for k, v in resp.getheaders():
                    if k.lower() not in HOP_BY_HOP and k.lower() != "content-length":
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    try:
                        self.wfile.write(data)
                    except (BrokenPipeError, ConnectionResetError):  # the browser went away (page closed)
                        pass

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _forward

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):  # aborted connections are not failures
                pass

        self.server = Server(("127.0.0.1", listen_port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="subpath-proxy", daemon=True)

    def __enter__(self) -> SubPathProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
