"""An HTTP proxy in front of an S3 server that fails some requests on demand: a store
that partly fails, for the lake's tests (tests/it/lake/partial.rs).

    python s3_fault_proxy.py <upstream host:port>

Prints `listening <port>` once it serves (on 127.0.0.1, a port the OS chooses). Requests
are forwarded unchanged (the Host header too, so S3 signatures still verify upstream),
except while a fault is armed. Faults are armed and counted over the proxy itself:

    POST /__fault/arm?lose_commit_acks=N   the next N Delta log commits (PUT .../_delta_log/
                                            <version>.json) reach the store, but the client
                                            is answered 503: a commit that landed and was
                                            reported failed
    POST /__fault/arm?fail_data_puts=N     the next N data file PUTs (.parquet) are answered
                                            503 without reaching the store
    POST /__fault/arm?flaky=K              every K-th request is answered 503 without
                                            reaching the store (0 ends it)
    GET  /__fault/stats                    JSON: what was injected, and the log keys whose
                                            acknowledgement was lost

(`__fault` cannot be a bucket: S3 bucket names have no underscores.)
"""

import http.client
import http.server
import json
import sys
import threading
import urllib.parse

UPSTREAM = sys.argv[1]
LOCK = threading.Lock()
ARMED = {"lose_commit_acks": 0, "fail_data_puts": 0, "flaky": 0}
STATS = {"requests": 0, "lost_acks": [], "failed_data_puts": 0, "flaky_failures": 0}
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}
LOCAL = threading.local()


def is_commit(method, path):
    name = path.split("?")[0].rsplit("/", 1)[-1]
    return method == "PUT" and "/_delta_log/" in path and name[:-5].isdigit() and name.endswith(".json")


def is_data_put(method, path):
    return method == "PUT" and path.split("?")[0].endswith(".parquet")


def decide(method, path):
    """What to do with a request: 'forward', 'refuse' or 'lose_ack'."""
    with LOCK:
        STATS["requests"] += 1
        if ARMED["flaky"] and STATS["requests"] % ARMED["flaky"] == 0:
            STATS["flaky_failures"] += 1
            return "refuse"
        if is_commit(method, path) and ARMED["lose_commit_acks"] > 0:
            return "lose_ack"
        if is_data_put(method, path) and ARMED["fail_data_puts"] > 0:
            ARMED["fail_data_puts"] -= 1
            STATS["failed_data_puts"] += 1
            return "refuse"
        return "forward"


def upstream():
    conn = getattr(LOCAL, "conn", None)
    if conn is None:
        conn = http.client.HTTPConnection(UPSTREAM, timeout=60)
        LOCAL.conn = conn
    return conn


class Proxy(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def reply(self, status, headers, body, length=None):
        """Answers; a HEAD sends no body but the length the store gave."""
        self.send_response_only(status)
        for name, value in headers:
            if name.lower() not in HOP_BY_HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def control(self, body):
        url = urllib.parse.urlparse(self.path)
        if self.command == "POST" and url.path == "/__fault/arm":
            with LOCK:
                for key, values in urllib.parse.parse_qs(url.query).items():
                    if key not in ARMED:
                        return self.reply(400, [], f"unknown fault {key}".encode())
                    ARMED[key] = int(values[0])
        with LOCK:
            answer = json.dumps({"armed": ARMED, **STATS}).encode()
        self.reply(200, [("Content-Type", "application/json")], answer)

    def forward(self):
        body = self.body()
        if self.path.startswith("/__fault/"):
            return self.control(body)
        action = decide(self.command, self.path)
        if action == "refuse":
            return self.refuse()
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        try:
            conn = upstream()
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException):
            LOCAL.conn = None
            return self.refuse()
        if action == "lose_ack" and resp.status == 200:
            with LOCK:
                if ARMED["lose_commit_acks"] > 0:
                    ARMED["lose_commit_acks"] -= 1
                    STATS["lost_acks"].append(self.path.split("?")[0])
                    return self.refuse()
        length = resp.getheader("Content-Length") if self.command == "HEAD" else None
        self.reply(resp.status, resp.getheaders(), data, length)

    def refuse(self):
        body = b"<Error><Code>ServiceUnavailable</Code><Message>injected</Message></Error>"
        self.reply(503, [("Content-Type", "application/xml")], body)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = forward


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        """A client that hangs up (a retry timed out, sluice stopped) is no error."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


server = Server(("127.0.0.1", 0), Proxy)
print(f"listening {server.server_address[1]}", flush=True)
server.serve_forever()
