#!/usr/bin/env python3
"""Writes fuzz/seeds/: inputs for wire_fuzzer shaped like the messages the stock ipyparallel 7.1
client and engines really send (see wire_fuzzer.cpp for the layout)."""
import json
import os

SEP = b"\n--\n"
TYPES = ["queue_request", "result_request", "db_request", "purge_request", "resubmit_request",
         "history_request", "load_request", "connection_request", "registration_request",
         "unregistration_request", "apply_request", "execute_request", "abort_request",
         "clear_request", "kernel_info_request", "no_such_request"]
CHANNELS = ["query", "task", "mux", "control", "registration", "broadcast"]
MSG = "a1b2c3d4-e5f60718293a4b5c6d7e8f90_1234_1"
ENGINE = "0f1e2d3c-4b5a69788796a5b4c3d2e1f0"


def header(msg_type):
    return {"msg_id": MSG, "msg_type": msg_type, "username": "user", "session": "a1b2c3d4-e5f60718293a4b5c6d7e8f90",
            "date": "2026-11-25T20:00:00.000000Z", "version": "5.3"}


def mode1(channel, msg_type, content):
    return bytes([1 + 3 * CHANNELS.index(channel)]) + bytes([TYPES.index(msg_type)]) + SEP + json.dumps(content).encode()


def mode2(channel, hdr, parent, md, content, *buffers):
    parts = [json.dumps(p).encode() for p in (hdr, parent, md, content)] + list(buffers)
    return bytes([2 + 3 * CHANNELS.index(channel)]) + SEP.join(parts)


seeds = {
    "queue": mode1("query", "queue_request", {"targets": None, "verbose": True}),
    "result": mode1("query", "result_request", {"msg_ids": [MSG], "status_only": False}),
    "db": mode1("query", "db_request", {"query": {"msg_id": {"$in": [MSG]}, "completed": {"$ne": None}},
                                        "keys": ["msg_id", "result_content"]}),
    "purge": mode1("query", "purge_request", {"msg_ids": [MSG], "engine_ids": [0]}),
    "resubmit": mode1("query", "resubmit_request", {"msg_ids": [MSG]}),
    "history": mode1("query", "history_request", {}),
    "load": mode1("query", "load_request", {"targets": [0, 1]}),
    "connection": mode1("query", "connection_request", {}),
    "register": mode1("registration", "registration_request", {"uuid": ENGINE, "id": 3}),
    "unregister": mode1("registration", "unregistration_request", {"id": 0}),
    "abort": mode1("control", "abort_request", {"msg_ids": [MSG]}),
    "clear": mode1("control", "clear_request", {}),
    "apply_task": mode2("task", header("apply_request"), {},
                        {"after": [], "follow": [MSG], "timeout": 1.5, "targets": [ENGINE], "retries": 1},
                        {}, b"\x80\x04\x95", b"\x00" * 16),
    "apply_mux": mode2("mux", header("apply_request"), {}, {}, {"ipp_call": {"function": "ipp.echo", "args": [1]}}),
    "execute": mode2("mux", header("execute_request"), {}, {}, {"code": "echo hi", "silent": False}),
    "bcast": mode2("broadcast", header("apply_request"), {},
                   {"targets": [[ENGINE, 0]], "is_coalescing": True}, {}),
    # Signed but not what the channel carries: refused with an InvalidRequest reply.
    "refused_task": mode1("task", "db_request", {"query": {}, "keys": ["msg_id"]}),
    "refused_mux": mode2("mux", header("no_such_request"), {}, {}, {}),
    "bad_content_task": mode2("task", header("apply_request"), {}, {}, "not an object"),
    "raw": bytes([0]) + SEP.join([b"<IDS|MSG>", b"0" * 64, b"{}", b"{}", b"{}", b"{}"]),
}
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds")
os.makedirs(out, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
