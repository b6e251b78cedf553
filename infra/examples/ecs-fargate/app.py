# A stand-in application for the example: accepts every record the sidecar POSTs and logs it.
import http.server
import json
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        print(json.dumps({
            "topic": self.headers.get("x-kafka-topic"),
            "partition": self.headers.get("x-kafka-partition"),
            "offset": self.headers.get("x-kafka-offset"),
            "attempt": self.headers.get("x-delivery-attempt"),
            "bytes": len(body),
        }), flush=True)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", 8080), Handler).serve_forever()
