"""A real gRPC server and client (grpcio) for the end-to-end tests, with
raw-bytes methods so no generated code is needed.

server PORT NAME   serves /weft.Echo/Say (unary), /weft.Echo/Chat (bidi streaming) and
                   /weft.Echo/Flaky (unary; every third call fails with UNAVAILABLE)
client ADDR        calls Say and Chat and prints what came back, exits non-zero on any mismatch
flaky ADDR N       calls Flaky N times; prints JSON counts by status code name
"""
import json
import sys
import threading
from concurrent import futures

import grpc


def say(request, context):
    context.set_trailing_metadata((("x-served-by", NAME),))
    return b"hello " + request


CALLS = 0
LOCK = threading.Lock()


def flaky(request, context):
    global CALLS
    with LOCK:
        CALLS += 1
        n = CALLS
    if n % 3 == 0:
        context.abort(grpc.StatusCode.UNAVAILABLE, "flaky: call %d" % n)
    return b"ok " + request


def chat(request_iterator, context):
    for i, msg in enumerate(request_iterator):
        yield b"%d:" % i + msg


def serve(port):
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    handler = grpc.method_handlers_generic_handler(
        "weft.Echo",
        {
            "Say": grpc.unary_unary_rpc_method_handler(say),
            "Chat": grpc.stream_stream_rpc_method_handler(chat),
            "Flaky": grpc.unary_unary_rpc_method_handler(flaky),
        },
    )
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port("0.0.0.0:%d" % port)
    server.start()
    server.wait_for_termination()


def client(addr):
    with grpc.insecure_channel(addr) as channel:
        say_rpc = channel.unary_unary("/weft.Echo/Say")
        reply, call = say_rpc.with_call(b"mesh", timeout=10)
        trailers = dict(call.trailing_metadata())
        assert reply == b"hello mesh", reply
        print("unary", reply.decode(), "served-by", trailers.get("x-served-by"))
        chat_rpc = channel.stream_stream("/weft.Echo/Chat")
        replies = list(chat_rpc(iter([b"a", b"b", b"c", b"d", b"e"]), timeout=10))
        assert replies == [b"0:a", b"1:b", b"2:c", b"3:d", b"4:e"], replies
        print("stream", len(replies))


def flaky_client(addr, n):
    counts = {}
    with grpc.insecure_channel(addr) as channel:
        rpc = channel.unary_unary("/weft.Echo/Flaky")
        for i in range(n):
            try:
                rpc(b"call %d" % i, timeout=10)
                code = "OK"
            except grpc.RpcError as e:
                code = e.code().name
            counts[code] = counts.get(code, 0) + 1
    print(json.dumps(counts))


if __name__ == "__main__":
    if sys.argv[1] == "flaky":
        flaky_client(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1] == "server":
        NAME = sys.argv[3]
        serve(int(sys.argv[2]))
    else:
        client(sys.argv[2])
