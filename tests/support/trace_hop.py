#!/usr/bin/env python3
"""The middle of a traced call, as an app in a mesh is written: for each
request it calls UPSTREAM, copying the trace headers it received (W3C, B3
and x-request-id, as Istio asks apps to), and answers with the headers it
received and the upstream's answer.

usage: trace_hop.py PORT UPSTREAM_HOST UPSTREAM_PATH
"""
import http.client
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PROPAGATED = ["traceparent", "tracestate", "b3", "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags", "x-request-id"]


class Hop(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        received = {k.lower(): v for k, v in self.headers.items()}
        conn = http.client.HTTPConnection(UPSTREAM, 80, timeout=10)
        conn.request("GET", UPSTREAM_PATH, headers={h: received[h] for h in PROPAGATED if h in received})
        upstream = conn.getresponse()
        data = upstream.read()
        conn.close()
        body = json.dumps({"received": received, "upstream_status": upstream.status, "upstream": json.loads(data)}).encode()
        self.send_response(upstream.status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    PORT, UPSTREAM, UPSTREAM_PATH = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    ThreadingHTTPServer(("0.0.0.0", PORT), Hop).serve_forever()
