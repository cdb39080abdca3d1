"""The ipp command on a cluster of stock Python engines and our native ones: it tells them apart
(kernel_info, which every kernel answers) and never sends a Python engine a native call."""
import json
import os
import socket
import subprocess

import pytest

from conftest import BIN_DIR, LIB_DIR, wait_for

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
    load_all = load = ipp(cluster, "load", PI_PLUGIN)
    assert load.returncode == 0, load.stdout + load.stderr
    assert f"[engine {native_id}] added" in load.stdout and f"[engine {python_id}]" not in load.stdout
    if stock_controller:
        # It keeps no list for later engines, and is not asked to (it would log "Bad Query Type").
        assert "engines that register later will not load it" in load.stderr, load.stderr
    # Named targets too (DirectView::load_plugin skips Python engines): only the native one loads,
    # and a Python engine alone is a clear error.
    load = ipp(cluster, "load", "-t", f"{python_id},{native_id}", PI_PLUGIN)
    assert load.returncode == 0, load.stdout + load.stderr
    assert f"[engine {native_id}]" in load.stdout and f"[engine {python_id}]" not in load.stdout, load.stdout
    load = ipp(cluster, "load", "-t", str(python_id), PI_PLUGIN)
    assert load.returncode != 0 and "no native engines" in load.stdout + load.stderr, load.stdout + load.stderr
    if not stock_controller:  # (the stock controller cannot tell a new client when IOPub reaches it)
        px = ipp(cluster, "px", "--", "echo", "shell-$$")
        assert px.returncode == 0, px.stdout + px.stderr
        assert px.stdout.count("[stdout:") == 1 and f"[stdout:{native_id}] shell-" in px.stdout, px.stdout
        assert "skipping Python engine" in px.stderr

    if not stock_controller:
        # Our hub names the plugin in every registration reply from now on: a stock engine that
        # registers then ignores it, and a native one loads it.
        assert "engines that register later load it too" in load_all.stderr, load_all.stderr
        cluster.start_engines(1)
        cluster.start_native_engines(1)
        def later_native_has_it():
            f = ipp(cluster, "functions", "--json")
            return f.returncode == 0 and len({fn["name"]: fn["engines"] for fn in json.loads(f.stdout)}.get("pi.sample", [])) == 2
        wait_for(later_native_has_it, what="the native engine started later to have pi.sample")
        kinds = [e["kind"] for e in json.loads(ipp(cluster, "engines", "--json").stdout)]
        assert sorted(kinds) == ["native", "native", "python", "python"], kinds
        assert json.loads(ipp(cluster, "load", "--list", "--json").stdout) == [PI_PLUGIN]
    # Nothing it was sent left a trace of a failure in the Python engines' logs, nor in the stock
    # controller's.
    for name in ["engine-0.log"] + ([] if stock_controller else ["engine-2.log"]):
        log = cluster.log(name)
        assert "Traceback" not in log and "not enough buffers" not in log, log[-3000:]
    if stock_controller:
        assert "Bad Query Type" not in cluster.log("controller.log")


@pytest.mark.parametrize("stock_controller", [False, True], ids=["our_controller", "stock_controller"])
def test_engines_show_what_each_kind_can_run(make_cluster, stock_controller):
    """Our controller shows what each engine announced (a stock Python engine announces nothing:
    python, no functions, no tags) and, after ipp load, the native engine's new functions. The
    stock controller ignores what our engine announces, and our engine never sends it an update."""
    cluster = make_cluster(engines=1, native_engines=1, engine_args=["--tag=gpu", "--resources=gpus=2"],
                           stock_controller=stock_controller)
    python_engine, native_engine = cluster.engines

    def engines():
        r = ipp(cluster, "engines", "--json")
        assert r.returncode == 0, r.stderr
        return {e["kind"]: e for e in json.loads(r.stdout)}

    by_kind = engines()
    assert sorted(by_kind) == ["native", "python"], by_kind
    assert by_kind["python"]["pid"] == python_engine.pid and by_kind["native"]["pid"] == native_engine.pid
    native_id, python_id = by_kind["native"]["id"], by_kind["python"]["id"]
    if stock_controller:
        assert by_kind["native"]["functions"] is None and by_kind["native"]["tags"] == [], by_kind
    else:
        python, native = by_kind["python"], by_kind["native"]
        assert (python["functions"], python["tags"], python["resources"]) == (0, [], {}), python
        assert native["tags"] == ["gpu"] and native["resources"] == {"gpus": 2}, native
        assert native["functions"] > 5, native
        table = ipp(cluster, "engines").stdout
        assert "gpu" in table and str(native["functions"]) in table, table
        # The stock client reads the same queue_status, extra keys and all.
        status = cluster.client().queue_status()
        assert status[native_id]["kind"] == "native" and status[python_id]["kind"] == "python", status
        assert status[native_id]["tags"] == ["gpu"], status

    load = ipp(cluster, "load", PI_PLUGIN)
    assert load.returncode == 0, load.stdout + load.stderr
    if stock_controller:
        engines()  # one more round trip through the hub after the load
        log = cluster.log("controller.log")
        assert "ipp_engine_update" not in log and "Bad Message Type" not in log, log[-3000:]
    else:
        wait_for(lambda: engines()["native"]["functions"] > by_kind["native"]["functions"], timeout=20,
                 what="the hub to show the loaded plugin's functions")
