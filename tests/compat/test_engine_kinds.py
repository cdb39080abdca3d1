"""The ipp command on a cluster of stock Python engines and our native ones: it tells them apart
(kernel_info, which every kernel answers) and never sends a Python engine a native call."""
import json
import os
import socket
import subprocess

import pytest

from conftest import BIN_DIR, LIB_DIR

IPP = os.path.join(BIN_DIR, "ipp")
PI_PLUGIN = os.path.abspath(os.path.join(LIB_DIR, "libipp_example_pi.so"))


def ipp(cluster, *args):
    return subprocess.run([IPP, args[0], "-f", cluster.connection_file("client"), *args[1:]],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("stock_controller", [False, True], ids=["our_controller", "stock_controller"])
def test_ipp_tells_python_engines_from_native_ones(make_cluster, stock_controller):
    cluster = make_cluster(engines=1, native_engines=1, engine_args=[f"--load={PI_PLUGIN}"],
                           stock_controller=stock_controller)
    python_engine, native_engine = cluster.engines
    r = ipp(cluster, "engines", "--json")
    assert r.returncode == 0, r.stderr
    by_kind = {e["kind"]: e for e in json.loads(r.stdout)}
    assert sorted(by_kind) == ["native", "python"], r.stdout
    assert by_kind["python"]["pid"] == python_engine.pid
    assert by_kind["native"]["pid"] == native_engine.pid
    assert by_kind["python"]["host"] == by_kind["native"]["host"] == socket.gethostname()
    table = ipp(cluster, "engines").stdout
    assert "python" in table and "native" in table and "?" not in table, table
    python_id, native_id = by_kind["python"]["id"], by_kind["native"]["id"]

    # Native commands with every engine as target leave the Python one out, with a note.
    f = ipp(cluster, "functions", "--json")
    assert f.returncode == 0, f.stderr
    assert f"skipping Python engine {python_id}" in f.stderr
    assert {fn["name"]: fn["engines"] for fn in json.loads(f.stdout)}["pi.sample"] == [native_id]
    load = ipp(cluster, "load", PI_PLUGIN)
    assert load.returncode == 0, load.stdout + load.stderr
    assert f"[engine {native_id}] added" in load.stdout and f"[engine {python_id}]" not in load.stdout
    if not stock_controller:  # (the stock controller cannot tell a new client when IOPub reaches it)
        px = ipp(cluster, "px", "--", "echo", "shell-$$")
        assert px.returncode == 0, px.stdout + px.stderr
        assert px.stdout.count("[stdout:") == 1 and f"[stdout:{native_id}] shell-" in px.stdout, px.stdout
        assert "skipping Python engine" in px.stderr

    # Nothing it was sent left a trace of a failure in the Python engine's log.
    log = cluster.log("engine-0.log")
    assert "Traceback" not in log and "not enough buffers" not in log, log[-3000:]
