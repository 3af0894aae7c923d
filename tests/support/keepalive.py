"""One HTTP/1.1 keep-alive connection for end-to-end tests: reads a path per
line on stdin, sends GET for it on the same connection, prints
`STATUS LOCAL_PORT` per request (the local port shows the connection was
never replaced)."""
import http.client
import sys

host, port = sys.argv[1], int(sys.argv[2])
conn = http.client.HTTPConnection(host, port, timeout=10)
conn.connect()
local_port = conn.sock.getsockname()[1]
for line in sys.stdin:
    path = line.strip()
    if not path:
        continue
    conn.request("GET", path)
    resp = conn.getresponse()
    resp.read()
    if conn.sock is None:
        # The server closed it: a new connection would hide what is tested.
        print(f"{resp.status} closed", flush=True)
        break
    print(f"{resp.status} {conn.sock.getsockname()[1] if conn.sock else local_port}", flush=True)
