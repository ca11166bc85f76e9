"""A real gRPC server and client (Python grpcio) for tests/e2e/grpc.rs.

Messages are raw bytes (generic handlers, no generated code), which is all
the test needs to see gRPC's framing, streaming and trailers cross berth.

  grpc_peer.py server            listens on 127.0.0.1 (h2c), prints its port
  grpc_peer.py client TARGET AUTHORITY CA_PEM TOKEN
                                 runs the calls, prints one JSON object
"""

import json
import sys
from concurrent import futures

import grpc


def serve():
    def echo(request, context):
        meta = dict(context.invocation_metadata())
        context.set_trailing_metadata((("x-trailer-check", "kept"),))
        user = meta.get("x-berth-user", "-")
        return b"echo:" + request + b" user=" + user.encode()

    def count(request, context):
        for i in range(int(request)):
            yield b"n%d" % i
        context.set_trailing_metadata((("x-count", request.decode()),))

    def fail(request, context):
        context.set_trailing_metadata((("x-why", "asked-to-fail"),))
        context.abort(grpc.StatusCode.NOT_FOUND, "no such thing: " + request.decode())

    handler = grpc.method_handlers_generic_handler(
        "berth.Test",
        {
            "Echo": grpc.unary_unary_rpc_method_handler(echo),
            "Count": grpc.unary_stream_rpc_method_handler(count),
            "Fail": grpc.unary_unary_rpc_method_handler(fail),
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    server.wait_for_termination()


def client(target, authority, ca_pem, token):
    with open(ca_pem, "rb") as f:
        creds = grpc.ssl_channel_credentials(root_certificates=f.read())
    host = authority.rsplit(":", 1)[0]
    options = (
        ("grpc.ssl_target_name_override", host),
        ("grpc.default_authority", authority),
    )
    meta = (("authorization", "Bearer " + token),) if token != "-" else ()
    out = {}
    with grpc.secure_channel(target, creds, options) as ch:
        echo = ch.unary_unary("/berth.Test/Echo")
        reply, call = echo.with_call(b"hello", metadata=meta, timeout=30)
        out["echo"] = reply.decode()
        out["echo_code"] = call.code().name
        out["echo_trailers"] = dict(call.trailing_metadata())

        count = ch.unary_stream("/berth.Test/Count")
        stream = count(b"5", metadata=meta, timeout=30)
        out["count"] = [m.decode() for m in stream]
        out["count_code"] = stream.code().name
        out["count_trailers"] = dict(stream.trailing_metadata())

        fail = ch.unary_unary("/berth.Test/Fail")
        try:
            fail(b"x", metadata=meta, timeout=30)
            out["fail_code"] = "OK"
        except grpc.RpcError as e:
            out["fail_code"] = e.code().name
            out["fail_details"] = e.details()
            out["fail_trailers"] = dict(e.trailing_metadata())
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        serve()
    else:
        client(*sys.argv[2:6])
