"""Peer for session_interop_test: the real jupyter_client Session on the other end of a socket.

Usage: /usr/bin/python3 session_peer.py ENDPOINT KEY

1. sends a signed message with two buffers (one 1 MiB) to the C++ side;
2. sends a message signed with the wrong key, which the C++ side must reject;
3. receives the C++ reply, verifies and deserializes it with Session.deserialize, checks it;
4. sends a signed "verdict" message saying whether every check passed, and why not.
"""
import datetime
import sys
import traceback

import zmq
from jupyter_client.session import Session

endpoint, key = sys.argv[1], sys.argv[2].encode()
ctx = zmq.Context()
sock = ctx.socket(zmq.DEALER)
sock.linger = 1000
sock.connect(endpoint)
session = Session(key=key, signature_scheme="hmac-sha256", packer="json", unpacker="json")
forger = Session(key=b"not-the-key", signature_scheme="hmac-sha256")

big = bytes(range(256)) * 4096
first = session.send(sock, "py_to_cpp", content={"n": 1, "text": "h\u00e9llo", "list": [1, 2.5, None]},
                     metadata={"targets": [0]}, buffers=[b"\x00bin\xff", big])
forger.send(sock, "forged", content={"evil": True})

errors = []
try:
    if not sock.poll(20000):
        raise RuntimeError("no reply from the C++ side within 20 s")
    idents, msg_list = session.feed_identities(sock.recv_multipart(copy=True))
    reply = session.deserialize(msg_list)  # raises on a bad or missing signature
    if reply["msg_type"] != "cpp_to_py":
        errors.append(f"msg_type {reply['msg_type']!r}")
    if reply["parent_header"].get("msg_id") != first["header"]["msg_id"]:
        errors.append("parent_header does not name our message")
    if not isinstance(reply["header"]["date"], datetime.datetime):
        errors.append(f"header date not parsed as a datetime: {reply['header']['date']!r}")
    if reply["header"].get("version") != "5.3":
        errors.append(f"version {reply['header'].get('version')!r}")
    if reply["content"] != {"echo": "h\u00e9llo", "n": 2, "forged_rejected": True}:
        errors.append(f"content {reply['content']!r}")
    if reply["metadata"] != {"status": "ok"}:
        errors.append(f"metadata {reply['metadata']!r}")
    bufs = [bytes(b) for b in reply["buffers"]]
    if bufs != [big[::-1], b""]:
        errors.append(f"buffers wrong: sizes {[len(b) for b in bufs]}")
except Exception:
    errors.append(traceback.format_exc())

session.send(sock, "verdict", content={"ok": not errors, "errors": errors})
sock.close()
ctx.term()
