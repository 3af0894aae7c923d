#!/usr/bin/env python3
"""A trace collector for the tests: OTLP over gRPC, OTLP over HTTP
(protobuf) and Zipkin v2 JSON, decoded with the official OpenTelemetry
Python protos (opentelemetry-proto) and grpcio. Every span received is
printed as one JSON line: how it came, its service, ids in hex, name,
kind, attributes.

usage: trace_collector.py HOST GRPC_PORT HTTP_PORT
(HTTP: POST /v1/traces is OTLP, POST /api/v2/spans is Zipkin.)
"""
import json
import sys
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2

lock = threading.Lock()


def emit(span):
    with lock:
        print(json.dumps(span, sort_keys=True), flush=True)


def attributes(kvs):
    return {kv.key: kv.value.string_value for kv in kvs}


KINDS = {trace_pb2.Span.SPAN_KIND_SERVER: "SERVER", trace_pb2.Span.SPAN_KIND_CLIENT: "CLIENT"}


def from_otlp(request, via):
    for rs in request.resource_spans:
        service = attributes(rs.resource.attributes).get("service.name")
        for ss in rs.scope_spans:
            for s in ss.spans:
                emit({
                    "via": via,
                    "service": service,
                    "scope": ss.scope.name,
                    "trace_id": s.trace_id.hex(),
                    "span_id": s.span_id.hex(),
                    "parent_id": s.parent_span_id.hex() or None,
                    "name": s.name,
                    "kind": KINDS.get(s.kind, str(s.kind)),
                    "attributes": attributes(s.attributes),
                    "error": s.status.code == trace_pb2.Status.STATUS_CODE_ERROR,
                    "duration_us": (s.end_time_unix_nano - s.start_time_unix_nano) // 1000,
                })


def from_zipkin(spans):
    for s in spans:
        emit({
            "via": "zipkin",
            "service": s.get("localEndpoint", {}).get("serviceName"),
            "scope": None,
            "trace_id": s["traceId"],
            "span_id": s["id"],
            "parent_id": s.get("parentId"),
            "name": s.get("name"),
            "kind": s.get("kind"),
            "attributes": s.get("tags", {}),
            "error": "error" in s.get("tags", {}),
            "duration_us": s.get("duration"),
        })


class TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def Export(self, request, context):
        from_otlp(request, "otlp-grpc")
        return trace_service_pb2.ExportTraceServiceResponse()


class Http(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        kind = self.headers.get("content-type", "")
        if self.path == "/v1/traces" and kind == "application/x-protobuf":
            request = trace_service_pb2.ExportTraceServiceRequest()
            request.ParseFromString(body)
            from_otlp(request, "otlp-http")
            answer, code, ctype = trace_service_pb2.ExportTraceServiceResponse().SerializeToString(), 200, "application/x-protobuf"
        elif self.path == "/api/v2/spans" and kind == "application/json":
            from_zipkin(json.loads(body))
            answer, code, ctype = b"", 202, "text/plain"
        else:
            answer, code, ctype = b"not a trace export", 400, "text/plain"
        self.send_response(code)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


def main():
    host, grpc_port, http_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    # Without SO_REUSEPORT: a port taken by someone else is an error, not shared.
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=[("grpc.so_reuseport", 0)])
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(TraceService(), server)
    server.add_insecure_port(f"{host}:{grpc_port}")
    server.start()
    http = ThreadingHTTPServer((host, http_port), Http)
    http.serve_forever()


if __name__ == "__main__":
    main()
