"""A real gRPC server and client (grpcio) for the end-to-end tests, with
raw-bytes methods so no generated code is needed.

server PORT NAME   serves /weft.Echo/Say (unary) and /weft.Echo/Chat (bidi streaming)
client ADDR        calls both and prints what came back, exits non-zero on any mismatch
"""
import sys
from concurrent import futures

import grpc


def say(request, context):
    context.set_trailing_metadata((("x-served-by", NAME),))
    return b"hello " + request


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


if __name__ == "__main__":
    if sys.argv[1] == "server":
        NAME = sys.argv[3]
        serve(int(sys.argv[2]))
    else:
        client(sys.argv[2])
