"""Our C++ ipengine with our controller and with the stock Python controller, driven by the
real ipyparallel Client (execute) and by raw native-call requests (see PROTOCOL.md)."""
import json
import os
import shutil
import signal
import subprocess
import time

import pytest
import zmq

import ipyparallel as ipp
from ipyparallel import error

from conftest import IPENGINE, LIB_DIR, Cluster, Native, ipyparallel_at_least, wait_for

PI_PLUGIN = os.path.abspath(os.path.join(LIB_DIR, "libipp_example_pi.so"))
MPI_PLUGIN = os.path.abspath(os.path.join(LIB_DIR, "libipp_example_mpi.so"))


@pytest.fixture(params=["ours", "stock"])
def native_cluster(request, make_cluster):
    """Two of our engines (with the pi plugin) behind our controller or the stock one."""
    return make_cluster(engines=0, native_engines=2, engine_args=[f"--load={PI_PLUGIN}"],
                        stock_controller=request.param == "stock")


def uuids(cluster):
    rc = cluster.client()
    return [rc._engines[i] for i in rc.ids]


def test_execute_shows_each_engines_output(native_cluster):
    rc = native_cluster.iopub_client()
    assert rc.ids == [0, 1]
    ar = rc[:].execute("echo engine pid $$; echo to-stderr >&2", block=False)
    ar.get(60)
    assert ar.wait_for_output(60)
    assert all(out.startswith("engine pid ") for out in ar.stdout)
    assert len(set(ar.stdout)) == 2
    assert ar.stderr == ["to-stderr\n", "to-stderr\n"]
    with pytest.raises(error.RemoteError) as info:
        rc[0].execute("echo partial; exit 3", block=False).get(60)
    assert info.value.ename == "CalledProcessError" and "exit status 3" in info.value.evalue


@pytest.mark.skipif(not ipyparallel_at_least(9, 1), reason="task labels are new in ipyparallel 9.1")
def test_reply_repeats_the_task_label(make_cluster):
    cluster = make_cluster(engines=0, native_engines=1)
    rc = cluster.client()
    ar = rc[:].execute("true", label="shell-step", block=False)
    ar.get(60)
    (record,) = rc.db_query({"msg_id": ar.msg_ids[0]}, keys=["label", "result_metadata"])
    assert record["label"] == "shell-step"
    assert record["result_metadata"]["label"] == "shell-step"


def test_native_calls_from_a_plugin(native_cluster):
    native = native_cluster.native()
    e0, e1 = uuids(native_cluster)
    reply = native.call(e0, "pi.sample", {"samples": 200000, "seed": 1})
    assert reply["content"]["status"] == "ok"
    r = reply["content"]["ipp_result"]
    assert abs(4 * r["inside"] / r["samples"] - 3.1416) < 0.05
    assert reply["metadata"]["engine"] == e0
    values = bytes(range(256)) * 4096 + b"\x00" * 8  # doubles, 1 MiB + 8
    import struct
    doubles = struct.pack("4d", 1, 2, 3, 4.5)
    reply = native.call(e1, "vec.sum_and_double", None, buffers=[doubles])
    assert reply["content"]["ipp_result"] == 10.5
    # buffers[0] is the result pickled for stock clients; the function's own buffers follow.
    assert struct.unpack("4d", reply["buffers"][1]) == (2, 4, 6, 9)
    echoed = native.call(e1, "ipp.echo", {"k": [1, 2]}, buffers=[values])
    assert echoed["content"]["ipp_result"] == {"k": [1, 2]} and bytes(echoed["buffers"][1]) == values


def test_errors_come_back_and_engine_keeps_serving(native_cluster):
    native = native_cluster.native()
    e0 = uuids(native_cluster)[0]
    reply = native.call(e0, "fail.always")
    c = reply["content"]
    assert c["status"] == "error" and "always fails" in c["evalue"] and c["traceback"]
    assert c["engine_info"]["engine_id"] == 0
    assert native.call(e0, "no.such.function")["content"]["ename"] == "NameError"
    assert native.call(e0, "pi.sample", "not a number")["content"]["ename"] == "TypeError"
    assert native.call(e0, "ipp.echo", 5)["content"]["ipp_result"] == 5


def test_python_work_gets_a_clear_error(native_cluster):
    rc = native_cluster.iopub_client()
    with pytest.raises(error.RemoteError) as info:
        rc[0].apply_sync(lambda: 1)
    assert info.value.ename == "UnsupportedRequest"
    assert "not pickled Python" in info.value.evalue
    ar = rc[0].execute("true", block=False)
    ar.get(60)
    assert ar.successful()  # still serving


def test_namespace_push_pull_with_buffers(native_cluster):
    native = native_cluster.native()
    e0 = uuids(native_cluster)[0]
    blob = os.urandom(3 << 20)
    r = native.call(e0, "ipp.push", {"values": {"a": [1, 2, 3], "b": None}, "buffer_names": ["b"]},
                    buffers=[blob])
    assert r["content"]["status"] == "ok"
    pulled = native.call(e0, "ipp.pull", {"names": ["a", "b"]})
    assert pulled["content"]["ipp_result"] == {"values": {"a": [1, 2, 3], "b": None}, "buffer_names": ["b"]}
    assert bytes(pulled["buffers"][1]) == blob
    assert sorted(native.call(e0, "ipp.names")["content"]["ipp_result"]) == ["a", "b"]
    assert native.call(e0, "ipp.pull", {"names": ["zz"]})["content"]["ename"] == "NameError"
    rc = native_cluster.client()
    rc.clear(targets=[0], block=True)
    assert native.call(e0, "ipp.names")["content"]["ipp_result"] == []


def test_load_plugin_at_run_time_and_engine_info(make_cluster):
    cluster = make_cluster(engines=0, native_engines=1)
    native = cluster.native()
    e0 = uuids(cluster)[0]
    assert native.call(e0, "pi.sample", 10)["content"]["ename"] == "NameError"
    loaded = native.call(e0, "ipp.load", {"path": PI_PLUGIN})["content"]
    assert "pi.sample" in loaded["ipp_result"]
    assert native.call(e0, "pi.sample", 10)["content"]["status"] == "ok"
    bad = native.call(e0, "ipp.load", {"path": "/nonexistent.so"})["content"]
    assert bad["ename"] == "ImportError" and "does not exist" in bad["evalue"]
    info = native.call(e0, "ipp.info")["content"]["ipp_result"]
    assert info["id"] == 0 and info["uuid"] == e0 and info["pid"] == cluster.engines[0].pid
    assert info["mpi_size"] == 1


def test_abort_and_interrupt(make_cluster):
    cluster = make_cluster(engines=0, native_engines=1)
    native = cluster.native()
    e0 = uuids(cluster)[0]
    # a long command, then a queued one that we abort
    running = native.send(e0, "execute_request", {"code": "sleep 30"})
    queued = native.send(e0, "apply_request", {"ipp_call": {"function": "ipp.echo", "args": 1}})
    time.sleep(0.3)
    native.send(e0, "abort_request", {"msg_ids": [queued["header"]["msg_id"]]}, channel="control")
    assert native.recv("control")["content"]["status"] == "ok"  # answered while the command runs
    start = time.monotonic()
    native.send(e0, "signal_request", {"sig": 2}, channel="control")
    assert native.recv("control")["content"]["status"] == "ok"
    reply = native.recv()
    assert reply["parent_header"]["msg_id"] == running["header"]["msg_id"]
    assert reply["content"]["status"] == "error" and time.monotonic() - start < 5
    # as in ipykernel, the aborted request is answered when its turn comes
    aborted = native.recv()
    assert aborted["parent_header"]["msg_id"] == queued["header"]["msg_id"]
    assert aborted["content"]["status"] == "aborted"
    # abort without msg_ids: everything waiting behind a running request
    running = native.send(e0, "apply_request", {"ipp_call": {"function": "ipp.sleep", "args": 1.0}})
    waiting = [native.send(e0, "apply_request", {"ipp_call": {"function": "ipp.echo", "args": i}}) for i in range(3)]
    time.sleep(0.3)
    native.send(e0, "abort_request", {}, channel="control")
    assert native.recv("control")["content"]["status"] == "ok"
    assert native.recv()["parent_header"]["msg_id"] == running["header"]["msg_id"]
    for w in waiting:
        r = native.recv()
        assert r["parent_header"]["msg_id"] == w["header"]["msg_id"] and r["content"]["status"] == "aborted"
    # a shell command with a timeout, through the builtin
    r = native.call(e0, "ipp.shell", {"command": "echo started; sleep 20", "timeout": 0.3})["content"]
    assert r["ipp_result"]["timed_out"] and r["ipp_result"]["stdout"] == "started\n"
    assert native.call(e0, "ipp.echo", "alive")["content"]["ipp_result"] == "alive"


def test_signals_by_name_as_python_spells_them(make_cluster, tmp_path):
    # 9.1's Client.send_signal sends names ("SIGUSR1"); the engine looks them up like Python's
    # signal module and refuses a name that is not a signal.
    cluster = make_cluster(engines=0, native_engines=1)
    native = cluster.native()
    e0 = uuids(cluster)[0]
    mark, ready = tmp_path / "usr1", tmp_path / "ready"
    running = native.send(e0, "execute_request", {
        "code": f"trap 'echo got > {mark}; exit 3' USR1; touch {ready}; while :; do sleep 0.05; done"})
    wait_for(ready.exists, what="the command to start")
    native.send(e0, "signal_request", {"sig": "SIGFOO"}, channel="control")
    refused = native.recv("control")["content"]
    assert refused["status"] == "error" and refused["ename"] == "ValueError" and "SIGFOO" in refused["evalue"]
    native.send(e0, "signal_request", {"sig": "SIGUSR1"}, channel="control")
    assert native.recv("control")["content"]["status"] == "ok"
    reply = native.recv()
    assert reply["parent_header"]["msg_id"] == running["header"]["msg_id"]
    assert reply["content"]["status"] == "error"
    assert mark.read_text() == "got\n"


def test_shutdown_request_and_sigterm_unregister(make_cluster):
    cluster = make_cluster(engines=0, native_engines=2)
    rc = cluster.client()
    # engine ids follow registration order, not start order: find engine 0's process
    pid0 = cluster.native().call(rc._engines[0], "ipp.info")["content"]["ipp_result"]["pid"]
    first = next(e for e in cluster.engines if e.pid == pid0)
    second = next(e for e in cluster.engines if e.pid != pid0)
    rc.shutdown(targets=[0], block=True)
    assert first.wait(10) == 0
    wait_for(lambda: rc.ids == [1], what="engine 0 to unregister")
    second.send_signal(signal.SIGTERM)
    assert second.wait(10) == 0
    wait_for(lambda: rc.ids == [], what="engine 1 to unregister")
    assert "asked to leave" in cluster.log("controller.log")


def test_engine_exits_when_the_controller_is_gone(make_cluster):
    cluster = make_cluster(engines=0, native_engines=1, engine_args=["--hb-misses=2"])
    cluster.stop_controller(signal.SIGKILL)
    assert cluster.engines[0].wait(15) == 1
    assert "no heartbeat from the controller" in cluster.log("engine-0.log")


def test_connection_info_from_environment_and_bad_files(make_cluster, tmp_path):
    cluster = make_cluster(engines=0)
    env = dict(os.environ, IPP_CONNECTION_INFO=open(cluster.connection_file("engine")).read())
    p = subprocess.Popen([IPENGINE, "--profile-dir", str(tmp_path / "empty")], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        rc = cluster.client()
        wait_for(lambda: rc.ids == [0], what="engine from IPP_CONNECTION_INFO")
    finally:
        p.terminate()
        p.wait(10)
    missing = subprocess.run([IPENGINE, "--profile-dir", str(tmp_path / "none")], capture_output=True,
                             text=True, timeout=10, env={k: v for k, v in os.environ.items() if k != "IPP_CONNECTION_INFO"})
    assert missing.returncode == 2 and "ipcontroller-engine.json" in missing.stderr
    badplugin = subprocess.run([IPENGINE, "--file", cluster.connection_file("engine"), "--load", "/nope.so"],
                               capture_output=True, text=True, timeout=10)
    assert badplugin.returncode == 1 and "/nope.so" in badplugin.stderr
    out = subprocess.run([IPENGINE, "--help"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0 and "--load" in out.stdout and "--mpi" in out.stdout


def test_many_engines_and_idle_memory(make_cluster):
    n = 32
    cluster = make_cluster(engines=0, native_engines=n)
    rc = cluster.iopub_client()
    ar = rc[:].execute("echo $$", block=False)
    ar.get(60)
    assert ar.wait_for_output(60)
    assert len(set(ar.stdout)) == n
    rss_kib = []
    for e in cluster.engines:
        for line in open(f"/proc/{e.pid}/status"):
            if line.startswith("VmRSS:"):
                rss_kib.append(int(line.split()[1]))
    print(f"idle engine RSS: median {sorted(rss_kib)[n // 2]} KiB, max {max(rss_kib)} KiB")
    assert max(rss_kib) < 40 * 1024
    # MPI is for --mpi engines only (their module loads it): a plain engine maps no libmpi.
    maps = open(f"/proc/{cluster.engines[0].pid}/maps").read()
    assert "libmpi" not in maps and "libipp_engine_mpi" not in maps


def test_mpi_engine_without_its_mpi_module_says_so(make_cluster, tmp_path):
    cluster = make_cluster(engines=0)
    bare = tmp_path / "bin" / "ipengine"  # an ipengine with no lib/ beside it
    bare.parent.mkdir()
    shutil.copy(IPENGINE, bare)
    out = subprocess.run([str(bare), "--mpi", "--file", cluster.connection_file("engine")], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 1, out
    assert "ipengine --mpi needs its MPI module libipp_engine_mpi.so" in out.stderr, out.stderr
    assert str(tmp_path / "lib" / "libipp_engine_mpi.so") in out.stderr, out.stderr


@pytest.mark.skipif(shutil.which("mpiexec") is None, reason="mpiexec not installed")
def test_mpi_allreduce_across_engines(make_cluster):
    cluster = make_cluster(engines=0)
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1", OMPI_MCA_oob_tcp_if_include="lo",
               OMPI_MCA_btl_tcp_if_include="lo", OMPI_MCA_btl="self,vader,tcp")
    log = open(os.path.join(cluster.workdir, "mpiexec.log"), "w")
    mpi = subprocess.Popen(["mpiexec", "-n", "4", IPENGINE, "--mpi", f"--profile-dir={cluster.profile_dir}",
                            f"--load={MPI_PLUGIN}"], env=env, stdout=log, stderr=subprocess.STDOUT,
                           start_new_session=True)
    cluster.engines.append(mpi)
    rc = cluster.client()
    wait_for(lambda: len(rc.ids) == 4, timeout=60, what="4 MPI engines")
    native = cluster.native()
    for i, uuid in enumerate(uuids(cluster)):
        native.send(uuid, "apply_request", {"ipp_call": {"function": "mpi.allreduce_sum", "args": i + 1}})
    replies = [native.recv(timeout=30)["content"] for _ in range(4)]
    assert all(r["status"] == "ok" for r in replies), replies
    assert sorted(r["ipp_result"]["rank"] for r in replies) == [0, 1, 2, 3]
    assert all(r["ipp_result"]["sum"] == 10 and r["ipp_result"]["size"] == 4 for r in replies)


def test_ipp_command_with_stock_controller(make_cluster):
    # our C++ client (the ipp command) and engines behind the stock Python controller
    cluster = make_cluster(engines=0, native_engines=2, engine_args=[f"--load={PI_PLUGIN}"], stock_controller=True)
    from conftest import BIN_DIR
    ipp_bin = os.path.join(BIN_DIR, "ipp")
    cf = cluster.connection_file("client")
    engines = json.loads(subprocess.run([ipp_bin, "engines", "--json", "-f", cf], capture_output=True, text=True,
                                        timeout=30, check=True).stdout)
    assert [e["id"] for e in engines] == [0, 1]
    px = subprocess.run([ipp_bin, "px", "-f", cf, "--", "echo", "from-$$"], capture_output=True, text=True, timeout=30)
    assert px.returncode == 0 and px.stdout.count("[stdout:") == 2
    m = subprocess.run([ipp_bin, "map", "pi.sample", "-", "-f", cf, "--chunksize", "2"], capture_output=True, text=True,
                       timeout=60, input="".join(json.dumps({"samples": 100, "seed": i}) + "\n" for i in range(5)))
    assert m.returncode == 0, m.stderr
    assert [json.loads(line)["samples"] for line in m.stdout.splitlines()] == [100] * 5


@pytest.mark.parametrize("stock_controller", [False, True])
def test_curve_end_to_end_with_our_client_and_engines(make_cluster, monkeypatch, stock_controller):
    # CURVE as ipyparallel 7.1 enables it; our engines and our C++ client (the ipp command) must
    # do the handshake with the controller's key from the connection files, against our
    # controller and the stock one. Keys never reach a log; connection files are 0600.
    public, secret = zmq.curve_keypair()
    monkeypatch.setenv("IPP_ENABLE_CURVE", "1")
    monkeypatch.setenv("IPP_CURVE_PUBLICKEY", public.decode())
    monkeypatch.setenv("IPP_CURVE_SECRETKEY", secret.decode())
    cluster = make_cluster(engines=0, native_engines=2, stock_controller=stock_controller)
    from conftest import BIN_DIR
    ipp_bin = os.path.join(BIN_DIR, "ipp")
    cf = cluster.connection_file("client")
    info = json.load(open(cf))
    assert info["curve_serverkey"] == public.decode()
    for role in ("client", "engine"):
        assert os.stat(cluster.connection_file(role)).st_mode & 0o777 == 0o600
    m = subprocess.run([ipp_bin, "map", "ipp.echo", "-", "-f", cf], capture_output=True, text=True, timeout=60,
                       input="".join(f"{i}\n" for i in range(20)))
    assert m.returncode == 0, m.stderr
    assert [json.loads(line) for line in m.stdout.splitlines()] == list(range(20))
    # the stock client too, against our engines
    rc = cluster.client()
    # The stock hub learns of each task's engine from its monitor stream, which may lag behind
    # the replies the client already has: its count reaches 0, not at once.
    wait_for(lambda: rc.queue_status()["unassigned"] == 0, what="the hub to see every task assigned")
    cluster.stop()
    logs = [cluster.log(name) for name in os.listdir(cluster.workdir) if name.endswith(".log")]
    assert len(logs) >= 3
    for log in logs:
        assert secret.decode() not in log
        if info["key"]:  # the stock controller turns signing off under CURVE: the key is ""
            assert info["key"] not in log


STOCK_91 = os.environ.get("IPP_IPYPARALLEL_91", "/work/shared/compat/ipyparallel-9.1.0")


@pytest.mark.parametrize("package", ["7.1", "9.1"])
def test_stock_client_calls_native_functions(native_cluster, package):
    """A native reply must never break a stock client (issue 15, item 4): its first buffer is
    the result pickled as plain Python objects, so the client's own reply handling works."""
    env = dict(os.environ, IPYTHONDIR=native_cluster.workdir)
    if package == "9.1":
        if not os.path.isdir(STOCK_91):
            pytest.skip(f"{STOCK_91} not found")
        env["PYTHONPATH"] = STOCK_91
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "native_from_stock_client.py")
    p = subprocess.run(["/usr/bin/python3", script, native_cluster.connection_file()], env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.strip().endswith("ok"), p.stdout + p.stderr
    assert "Traceback" not in p.stderr and "Unhandled" not in p.stderr, p.stderr


def test_engines_through_the_gateway_come_back_after_a_controller_restart(make_cluster):
    # Our engines with every channel but registration over one connection (--engine-gateway
    # always): killed and restarted with --restore, the controller's gateway knows none of them
    # until each says hello again, as it does when no ping comes; then they serve as before.
    cluster = make_cluster(engines=0, native_engines=2, controller_args=["--engine-gateway=always"])
    rc = cluster.client()
    assert rc.ids == [0, 1]
    rc[:].execute("true", block=False).get(60)
    assert cluster.log("controller.log").count("through the gateway") == 2
    rc = cluster.kill_and_restore(2)
    rc[:].execute("echo back", block=False).get(60)
    # Still registered after more than the engines' heartbeat patience (10 checks of 0.8 s).
    time.sleep(10)
    assert len(rc.ids) == 2
    rc[:].execute("true", block=False).get(60)
