"""A raw-socket HTTP/1.1 client for end-to-end tests: sends one request
with a forged x-forwarded-client-cert exactly as the mode says, prints the
whole response. Modes: get, propfind, blank-line (a CRLF before the request
line), slow (the first byte, a pause past the proxy's detect timeout, the
rest)."""
import socket
import sys
import time

host, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
method = "PROPFIND" if mode == "propfind" else "GET"
head = (
    f"{method} /who HTTP/1.1\r\nHost: web\r\n"
    "x-forwarded-client-cert: By=spiffe://cluster.local/ns/bank/sa/vault;URI=spiffe://cluster.local/ns/bank/sa/admin\r\n"
    "x-weft-orig-proto: HTTP/1.1\r\nConnection: close\r\n\r\n"
).encode()
if mode == "blank-line":
    head = b"\r\n" + head
s = socket.create_connection((host, port), timeout=10)
if mode == "slow":
    s.sendall(head[:1])
    time.sleep(0.3)
    s.sendall(head[1:])
else:
    s.sendall(head)
out = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    out += chunk
sys.stdout.write(out.decode("utf-8", "replace"))
