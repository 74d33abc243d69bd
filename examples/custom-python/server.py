"""A function in a custom runtime: any HTTP server on FC_SERVER_PORT.

funclet calls it the way Function Compute does: ``POST /invoke`` with the event for an
invocation, ``POST /initialize`` once per instance, ``GET /pre-stop`` before it goes,
and an HTTP trigger's requests as they came. Only the standard library is used.

    .venv/bin/funclet invoke custom-python --payload '{"name": "funclet"}'
    curl -s http://127.0.0.1:9000/http/custom-python/hello?name=web
"""

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

INITIALIZED = []


class Function(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = -1  # headers and body in one write: no Nagle stall on a kept-alive connection

    def reply(self, status, body, content_type="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_POST(self):
        event = self.body()
        if self.path == "/initialize":
            INITIALIZED.append(self.headers["x-fc-request-id"])
            return self.reply(200, b"", "text/plain")
        if self.path == "/invoke":
            name = json.loads(event or b"{}").get("name", "world")
            print(f"invoked by {self.headers['x-fc-request-id']}", flush=True)
            return self.reply(200, {"hello": name, "initialized": len(INITIALIZED),
                                    "memory": self.headers["x-fc-function-memory"]})
        self.reply(200, {"method": "POST", "path": self.path, "received": len(event)})

    def do_GET(self):
        url = urlsplit(self.path)
        if url.path == "/pre-stop":
            print("pre-stop: goodbye", flush=True)
            return self.reply(200, b"", "text/plain")
        name = parse_qs(url.query).get("name", ["world"])[0]
        self.reply(200, {"hello": name, "path": url.path})

    def log_message(self, *args):
        pass  # the access log would go to the invocation's log


if __name__ == "__main__":
    port = int(os.environ["FC_SERVER_PORT"])
    ThreadingHTTPServer(("127.0.0.1", port), Function).serve_forever()
