"""A real WebSocket server and client (the `websockets` package) for the
end-to-end tests.

server PORT      echoes every message back
client URL N     sends N text messages and one binary, checks every echo, prints a summary
"""
import sys

from websockets.sync.client import connect
from websockets.sync.server import serve


def echo(ws):
    for message in ws:
        ws.send(message)


def client(url, n):
    with connect(url, open_timeout=10) as ws:
        for i in range(n):
            ws.send("message %d" % i)
            got = ws.recv(timeout=10)
            assert got == "message %d" % i, got
        ws.send(b"\x00\x01binary")
        assert ws.recv(timeout=10) == b"\x00\x01binary"
    print("websocket ok %d" % (n + 1))


if __name__ == "__main__":
    if sys.argv[1] == "server":
        with serve(echo, "0.0.0.0", int(sys.argv[2])) as server:
            server.serve_forever()
    else:
        client(sys.argv[2], int(sys.argv[3]))
