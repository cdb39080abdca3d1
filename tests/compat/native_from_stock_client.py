"""A stock ipyparallel Client (whichever `import ipyparallel` finds: Debian's 7.1, or 9.1 on
PYTHONPATH) sends native-call apply_requests to our engines through its own machinery and gets
the results back as Python objects. Usage: native_from_stock_client.py CLIENT_JSON.
Prints "ok" at the end; any failure raises."""
import struct
import sys

import ipyparallel as ipp
from ipyparallel import error

rc = ipp.Client(sys.argv[1], timeout=30)
rc.wait_for_engines(2, timeout=30)
e0, e1 = (rc._engines[i] for i in rc.ids[:2])


def send(socket, function, args=None, ident=None, buffers=None, metadata=None):
    """A native call sent the way send_apply_request sends pickled ones; returns its future.
    `socket` is one of the client's ZMQStreams, as its views pass: a send on the raw zmq socket
    can take in the edge of ZMQ_FD that a reply which just arrived raised, and the stream then
    never reads that reply (nor the next, which raises no edge)."""
    return rc._send(socket, "apply_request", content={"ipp_call": {"function": function, "args": args}},
                    ident=ident.encode() if ident else None, buffers=buffers, metadata=metadata,
                    track_outstanding=True)


def call(*args, **kwargs):
    """The result the client's own reply handler made (a RemoteError for an error reply)."""
    return send(*args, **kwargs).result(timeout=30)


# The stock controller's task scheduler silently drops a task for an engine whose connection to
# it is not up yet (a ROUTER without ZMQ_ROUTER_MANDATORY: PROTOCOL.md, "No silent drops"); on a
# loaded machine that can outlast registration. Reach each engine through it first, resending
# what was dropped, so that the checks below test replies, not that race.
for engine in (e0, e1):
    for attempt in range(10):
        try:
            if send(rc._task_stream, "ipp.echo", "ready", metadata={"targets": [engine]}).result(timeout=3) == "ready":
                break
        except TimeoutError:
            continue
    else:
        raise AssertionError(f"engine {engine} not reachable through the task scheduler")

# Plain results, through the MUX and the load-balanced scheduler.
assert call(rc._mux_stream, "ipp.echo", {"k": [1, 2.5, None, True, "é"]}, e0) == \
    {"k": [1, 2.5, None, True, "é"]}
assert call(rc._task_stream, "ipp.echo", 2 ** 40 + 1) == 2 ** 40 + 1
assert call(rc._task_stream, "ipp.echo", -7) == -7
info = call(rc._mux_stream, "ipp.info", None, e1)
assert info["uuid"] == e1 and isinstance(info["pid"], int)

# A result with buffers: (result, bytes...) in the order the function added them.
doubles = struct.pack("4d", 1, 2, 3, 4.5)
total, doubled = call(rc._mux_stream, "vec.sum_and_double", None, e1, buffers=[doubles])
assert total == 10.5 and struct.unpack("4d", doubled) == (2, 4, 6, 9)
assert call(rc._mux_stream, "ipp.echo", "x", e0, buffers=[b"a", b"bc"]) == ("x", b"a", b"bc")

# An error reply is a RemoteError with the engine's id.
err = call(rc._mux_stream, "no.such.function", None, e0)
assert isinstance(err, error.RemoteError) and err.ename == "NameError", err
assert err.engine_info["engine_id"] == rc.ids[0]

# A coalescing broadcast: the scheduler concatenates each engine's buffers; the client splits
# them by unpickling, so each reply's pickle must account for exactly its own buffers.
targets = [(e0, rc.ids[0]), (e1, rc.ids[1])]
results = call(rc._broadcast_stream, "ipp.echo", [3], buffers=[b"blob"],
               metadata={"targets": targets, "is_broadcast": True, "is_coalescing": True})
assert results == [([3], b"blob"), ([3], b"blob")], results

# Results fetched from the hub by another client: the hub concatenates the records' buffers
# and the client splits them by unpickling, in msg_id order.
f1 = send(rc._mux_stream, "ipp.echo", "a", e0, buffers=[b"1"])
f2 = send(rc._mux_stream, "ipp.echo", {"b": 2}, e1, buffers=[b"2", b"3"])
f3 = send(rc._task_stream, "ipp.echo", [4])
got = []
for name, f in (("MUX to engine 0", f1), ("MUX to engine 1", f2), ("load-balanced", f3)):
    try:
        got.append(f.result(timeout=30))
    except TimeoutError:
        raise AssertionError(f"no reply in 30 s to the {name} request {f.msg_id}; outstanding: {rc.outstanding}")
assert got == [("a", b"1"), ({"b": 2}, b"2", b"3"), [4]], got
rc2 = ipp.Client(sys.argv[1], timeout=30)
assert rc2.get_result([f1.msg_id, f2.msg_id, f3.msg_id]).get(30) == [("a", b"1"), ({"b": 2}, b"2", b"3"), [4]]
rc2.close()

# The client's I/O thread survived all of it: normal work and queries still go through.
assert rc._io_thread.is_alive()
ar = rc[:].execute("true", block=False)
ar.get(30)
assert ar.successful()
assert set(rc.queue_status()) >= set(rc.ids)
rc.close()
print("ok")
