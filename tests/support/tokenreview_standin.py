"""A stand-in for the Kubernetes API server's TokenReview endpoint (no API
server can run on this machine), for tests/kubernetes.rs. It answers
POST /apis/authentication.k8s.io/v1/tokenreviews over TLS as the real one
does: 401 unless the caller presents the expected bearer token; for a known
token whose audiences intersect spec.audiences, authenticated with the user
and the intersection; otherwise authenticated: false with an error. Every
review is logged to stdout as one JSON line.

usage: tokenreview_standin.py PORT CERT KEY BEARER TOKENS_JSON
TOKENS_JSON maps token -> {"username": ..., "audiences": [...]}."""
import http.server
import json
import ssl
import sys

port, cert, key, bearer, tokens_path = sys.argv[1:6]
tokens = json.load(open(tokens_path))


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        review = json.loads(self.rfile.read(length) or b"{}")
        authorized = self.headers.get("authorization") == "Bearer " + bearer
        spec = review.get("spec", {})
        print(json.dumps({"path": self.path, "authorized": authorized, "audiences": spec.get("audiences")}), flush=True)
        if self.path != "/apis/authentication.k8s.io/v1/tokenreviews":
            return self.answer(404, {"kind": "Status", "code": 404})
        if not authorized:
            return self.answer(401, {"kind": "Status", "code": 401, "message": "Unauthorized"})
        known = tokens.get(spec.get("token", ""))
        wanted = spec.get("audiences") or []
        status = {"authenticated": False, "error": "invalid bearer token"}
        if known:
            common = [a for a in known["audiences"] if a in wanted] if wanted else known["audiences"]
            if common:
                status = {"authenticated": True, "user": {"username": known["username"], "groups": ["system:serviceaccounts"]}, "audiences": common}
            else:
                status = {"authenticated": False, "error": "token audiences %s is invalid for the target audiences %s" % (known["audiences"], wanted)}
        self.answer(201, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec, "status": status})


server = http.server.HTTPServer(("127.0.0.1", int(port)), Handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
server.socket = ctx.wrap_socket(server.socket, server_side=True)
print(json.dumps({"listening": int(port)}), flush=True)
server.serve_forever()
