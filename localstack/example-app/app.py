"""The example application of localstack/docker-compose.yml (Python standard library only).

msk-sidecar POSTs every record of the `orders` topic to /events. This application answers so
that every path of the sidecar shows up in a few seconds:

  * a value that is not JSON              -> 400: permanent, dead-lettered at once
  * order_id divisible by FLAKY_EVERY     -> 500 on the first FLAKY_FAILURES attempts, then 200:
                                             retried with backoff, then delivered
  * order_id divisible by POISON_EVERY    -> 500 on every attempt: dead-lettered once the
                                             retries are exhausted
  * order_id divisible by THROTTLE_EVERY  -> 429 with Retry-After: 1 on the first attempt
  * everything else                       -> 200

The outcome depends only on the record and the x-delivery-attempt header, so the application
keeps no state and a redelivery gets the same answers. Each request is logged on one line.
GET /health answers 200 (the compose health check).
"""

import http.server
import json
import os
import sys

PORT = int(os.environ.get("PORT", "8080"))
FLAKY_EVERY = int(os.environ.get("FLAKY_EVERY", "5"))
FLAKY_FAILURES = int(os.environ.get("FLAKY_FAILURES", "2"))
POISON_EVERY = int(os.environ.get("POISON_EVERY", "11"))
THROTTLE_EVERY = int(os.environ.get("THROTTLE_EVERY", "7"))


def decide(body: bytes, attempt: int):
    """Returns (status, extra headers, reason) for one delivery attempt."""
    try:
        order = json.loads(body)
        order_id = int(order["order_id"])
    except (ValueError, KeyError, TypeError):
        return 400, {}, "malformed order"
    if POISON_EVERY and order_id % POISON_EVERY == 0:
        return 500, {}, "poison order: fails every time"
    if FLAKY_EVERY and order_id % FLAKY_EVERY == 0 and attempt <= FLAKY_FAILURES:
        return 500, {}, f"flaky order: fails the first {FLAKY_FAILURES} attempts"
    if THROTTLE_EVERY and order_id % THROTTLE_EVERY == 0 and attempt == 1:
        return 429, {"Retry-After": "1"}, "throttled once"
    return 200, {}, "ok"


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "example-app/1"
    protocol_version = "HTTP/1.1"  # keep-alive: the sidecar reuses its connections

    def do_GET(self):
        if self.path == "/health":
            self.reply(200, {}, b"ok\n")
        else:
            self.reply(404, {}, b"not found\n")

    def do_POST(self):
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length)
        if self.path != "/events":
            self.reply(404, {}, b"not found\n")
            return
        attempt = int(self.headers.get("x-delivery-attempt") or 1)
        status, headers, reason = decide(body, attempt)
        print(json.dumps({
            "status": status,
            "reason": reason,
            "topic": self.headers.get("x-kafka-topic"),
            "partition": self.headers.get("x-kafka-partition"),
            "offset": self.headers.get("x-kafka-offset"),
            "attempt": attempt,
            "traceparent": self.headers.get("traceparent"),
            "value": body[:80].decode("utf-8", "replace"),
        }), flush=True)
        self.reply(status, headers, (reason + "\n").encode())

    def reply(self, status, headers, body):
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        pass  # one JSON line per delivery is printed by do_POST


def main():
    server = http.server.ThreadingHTTPServer(("0.0.0.0", PORT), Handler)
    print(f"example-app listening on :{PORT}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
