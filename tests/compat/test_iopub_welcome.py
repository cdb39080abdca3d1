"""Our controller greets each IOPub subscriber with a signed, parentless iopub_welcome (see
PROTOCOL.md): the stock clients, 7.1 and 9.1, must take no notice of it."""
import json
import os
import subprocess
import sys

import pytest
import zmq

IPP_91 = "/work/shared/compat/ipyparallel-9.1.0"

CLIENT = r'''
import sys
import ipyparallel as ipp
rc = ipp.Client(sys.argv[1], timeout=20)
rc.wait_for_engines(1, timeout=20)
ar = rc[:].execute("echo from-the-engine", block=False)
ar.get(30)
assert ar.wait_for_output(30)
print(ipp.__version__, ar.stdout)
rc.close()
'''


def test_a_subscriber_is_welcomed(make_cluster):
    cluster = make_cluster(engines=0)
    info = json.load(open(cluster.connection_file("client")))
    from jupyter_client.session import Session
    session = Session(key=info["key"].encode(), signature_scheme="hmac-sha256")
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.linger = 0
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(f"{info['interface']}:{info['iopub']}")
    try:
        assert sub.poll(20000), "no welcome"
        idents, msg = session.feed_identities(sub.recv_multipart())
        welcome = session.deserialize(msg)  # checks the signature
        assert welcome["header"]["msg_type"] == "iopub_welcome"
        assert welcome["parent_header"] == {}
        assert welcome["content"] == {"subscription": ""}
    finally:
        sub.close()
        ctx.term()


@pytest.mark.parametrize("version", ["7.1", "9.1"])
def test_stock_clients_ignore_the_welcome(make_cluster, version):
    if version == "9.1" and not os.path.isdir(IPP_91):
        pytest.skip("no copy of ipyparallel 9.1")
    cluster = make_cluster(engines=0, native_engines=1)
    env = dict(os.environ, IPYTHONDIR=cluster.workdir)
    if version == "9.1":
        env["PYTHONPATH"] = IPP_91
    r = subprocess.run([sys.executable, "-c", CLIENT, cluster.connection_file("client")], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.startswith(version) and "from-the-engine" in r.stdout, r.stdout
