"""The real ipyparallel 7.1 Client and stock engines against our ipcontroller."""
import os
import signal
import stat
import time

import pytest
import zmq

import ipyparallel as ipp
from ipyparallel import error

from conftest import BIN_DIR, ipyparallel_at_least, wait_for

needs_labels = pytest.mark.skipif(not ipyparallel_at_least(9, 1), reason="task labels are new in ipyparallel 9.1")


def test_registration_and_connection_files(shared_cluster):
    rc = shared_cluster.client()
    assert rc.ids == [0, 1]
    for role in ("client", "engine"):
        path = shared_cluster.connection_file(role)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    import json
    info = json.load(open(shared_cluster.connection_file("client")))
    assert info["interface"] == "tcp://127.0.0.1"
    assert info["signature_scheme"] == "hmac-sha256" and len(info["key"]) > 16
    # the key is never written to our log
    assert info["key"] not in shared_cluster.log("controller.log")


def test_direct_view(shared_cluster):
    rc = shared_cluster.client()
    dv = rc[:]
    pids = dv.apply_sync(os.getpid)
    assert len(set(pids)) == 2
    assert dv.map_sync(lambda x: x * 2, range(9)) == [x * 2 for x in range(9)]
    dv.push({"a": 5}, block=True)
    assert dv.pull("a", block=True) == [5, 5]
    dv.scatter("s", list(range(10)), block=True)
    assert dv.gather("s", block=True) == list(range(10))
    dv.execute("b = a + 1", block=False).get(60)  # never blocks forever if IOPub lost "idle"
    assert dv["b"] == [6, 6]
    assert rc[1].apply_sync(lambda: 42) == 42


def test_remote_error_comes_back(shared_cluster):
    rc = shared_cluster.client()
    with pytest.raises(error.RemoteError) as info:
        rc[0].apply_sync(lambda: 1 / 0)
    assert info.value.ename == "ZeroDivisionError"


def test_broadcast_view(shared_cluster):
    rc = shared_cluster.client()
    bv = rc.broadcast_view()
    assert len(set(bv.apply_sync(os.getpid))) == 2
    coalescing = rc.broadcast_view(is_coalescing=True)
    assert sorted(coalescing.apply_sync(lambda: 7)) == [7, 7]


@pytest.mark.skipif(not ipyparallel_at_least(8, 8), reason="BroadcastView.map and imap are new in ipyparallel 8")
def test_broadcast_map_and_cancelled_imap(shared_cluster):
    import itertools
    rc = shared_cluster.client()
    assert rc.broadcast_view().map_sync(lambda x: x * 2, range(6)) == [0, 2, 4, 6, 8, 10]
    lv = rc.load_balanced_view()
    it = lv.imap(lambda x: x * 3, itertools.count(), max_outstanding=2)
    assert [next(it) for _ in range(5)] == [0, 3, 6, 9, 12]
    it.cancel()
    # (rc.wait() is no use here: after BroadcastView.map the 9.1 client keeps three msg_ids
    # outstanding for ever, with its own controller too.)
    assert lv.apply_sync(lambda: "after") == "after"
    assert rc.queue_status()["unassigned"] == 0


@pytest.mark.skipif(not ipyparallel_at_least(8), reason="engines answer signal_request (their nanny) since 8.0")
def test_send_signal_reaches_the_engine(shared_cluster):
    rc = shared_cluster.client()
    ar = rc[0].apply_async(time.sleep, 60)
    wait_for(lambda: rc.queue_status(0)["queue"] == 1, what="the sleep to reach the engine")

    def interrupted():
        # Until the engine is inside the sleep, SIGINT finds it idle, where it is ignored.
        rc.send_signal("SIGINT", targets=[0], block=True)
        return ar.wait(0.5) or ar.ready()

    wait_for(interrupted, timeout=20, what="the interrupted sleep to return")
    with pytest.raises(error.RemoteError) as info:
        ar.get(20)
    assert info.value.ename == "KeyboardInterrupt"


def test_queue_status_and_results_from_second_client(shared_cluster):
    rc = shared_cluster.client()
    lv = rc.load_balanced_view()
    ar = lv.apply_async(lambda x: x + 1, 41)
    assert ar.get(10) == 42
    status = rc.queue_status()
    assert set(status) >= {0, 1, "unassigned"}
    assert status["unassigned"] == 0
    assert sum(status[e]["completed"] for e in (0, 1)) >= 1

    other = shared_cluster.client()
    assert other.get_result(ar.msg_ids[0]).get(10) == 42
    records = other.db_query({"msg_id": {"$in": ar.msg_ids}}, keys=["msg_id", "completed", "engine_uuid"])
    assert [r["msg_id"] for r in records] == ar.msg_ids
    assert records[0]["completed"] is not None
    assert records[0]["engine_uuid"] in rc._engines.values()
    assert ar.msg_ids[0] in other.hub_history()
    later = other.db_query({"submitted": {"$gt": records[0]["completed"]}}, keys=["msg_id"])
    assert ar.msg_ids[0] not in [r["msg_id"] for r in later]
    with pytest.raises(Exception, match="No such message"):
        other.get_result("no-such-msg-id").get(5)


@needs_labels
def test_task_labels_round_trip(shared_cluster):
    rc = shared_cluster.client()
    labelled_view = rc.load_balanced_view()
    labelled_view.label = "sweep-1"  # 9.1's map() sends no label, its apply() does
    swept = [labelled_view.apply_async(lambda x: x, i) for i in range(3)]
    assert [ar.get(30) for ar in swept] == [0, 1, 2]
    swept_ids = [ar.msg_ids[0] for ar in swept]
    executed = rc[:].execute("x = 1", label="setup", block=False)
    executed.get(30)
    plain = rc.load_balanced_view().apply_async(lambda: 0)
    plain.get(30)
    ids = swept_ids + executed.msg_ids + plain.msg_ids
    other = shared_cluster.client()
    records = other.db_query({"msg_id": {"$in": ids}, "label": "sweep-1"}, keys=["msg_id", "label"])
    assert sorted(r["msg_id"] for r in records) == sorted(swept_ids)
    assert {r["label"] for r in records} == {"sweep-1"}
    labelled = other.db_query({"msg_id": {"$in": ids}, "label": {"$ne": None}}, keys=["label"])
    assert sorted(r["label"] for r in labelled) == ["setup", "setup", "sweep-1", "sweep-1", "sweep-1"]
    (record,) = other.db_query({"msg_id": plain.msg_ids[0]})
    assert record["label"] is None
    globbed = other.db_query({"msg_id": {"$in": ids}, "label": {"$glob": "sw*-?"}}, keys=["msg_id"])
    assert sorted(r["msg_id"] for r in globbed) == sorted(swept_ids)
    assert len(other.db_query({"msg_id": {"$in": ids}, "label": {"$glob": "*"}}, keys=[])) == 5
    assert other.get_result(swept_ids[1]).get(10) == 1
    (record,) = other.db_query({"msg_id": swept_ids[1]}, keys=["result_metadata"])
    assert record["result_metadata"]["label"] == "sweep-1"  # the engine's reply repeats it


@needs_labels
def test_task_labels_round_trip_in_sqlitedb(make_cluster):
    """The same with --sqlitedb, across a controller restart: labels come back from the file."""
    cluster = make_cluster(engines=1, controller_args=["--sqlitedb"])
    rc = cluster.client()
    view = rc.load_balanced_view()
    view.label = "sql-1"
    labelled = [view.apply_async(lambda x: x, i) for i in range(2)]
    assert [ar.get(30) for ar in labelled] == [0, 1]
    plain = rc.load_balanced_view().apply_async(lambda: 0)
    plain.get(30)
    ids = [ar.msg_ids[0] for ar in labelled]
    query = {"msg_id": {"$in": ids + plain.msg_ids}, "label": "sql-1"}
    assert sorted(r["msg_id"] for r in rc.db_query(query, keys=["msg_id"])) == sorted(ids)
    time.sleep(0.2)  # past the store's 20 ms commit interval
    rc.close()
    cluster.clients.clear()
    cluster.stop_controller(signal.SIGKILL)
    cluster.start_controller(extra=["--restore"])
    rc = cluster.client()
    records = rc.db_query(query, keys=["msg_id", "label"])
    assert sorted(r["msg_id"] for r in records) == sorted(ids) and {r["label"] for r in records} == {"sql-1"}
    globbed = rc.db_query({"msg_id": {"$in": ids + plain.msg_ids}, "label": {"$glob": "sql-*"}}, keys=["msg_id"])
    assert len(globbed) == 2
    (record,) = rc.db_query({"msg_id": plain.msg_ids[0]}, keys=["label"])
    assert record["label"] is None


def test_glob_query(shared_cluster):
    rc = shared_cluster.client()
    ar = rc.load_balanced_view().apply_async(lambda: 5)
    ar.get(30)
    session_prefix = ar.msg_ids[0][:12]
    found = rc.db_query({"msg_id": {"$glob": session_prefix + "*"}, "engine_uuid": {"$glob": "?*"}},
                        keys=["msg_id"])
    assert ar.msg_ids[0] in [r["msg_id"] for r in found]
    assert rc.db_query({"msg_id": ar.msg_ids[0], "resubmitted": {"$glob": "*"}}) == []
    with pytest.raises(Exception, match="glob"):
        rc.db_query({"msg_id": {"$glob": 5}})


def test_purge_and_resubmit(shared_cluster):
    rc = shared_cluster.client()
    lv = rc.load_balanced_view()
    ar = lv.apply_async(lambda: 3)
    assert ar.get(10) == 3
    msg_id = ar.msg_ids[0]
    re = rc.resubmit(msg_id)
    assert re.get(10) == [3]  # AsyncHubResult is list-like, as with the stock hub
    assert re.msg_ids[0] != msg_id
    rc.purge_results(msg_id)
    assert rc.db_query({"msg_id": msg_id}) == []
    rc.purge_everything()
    assert rc.db_query({"completed": {"$ne": None}}) == []


def test_abort_queued_task(shared_cluster):
    rc = shared_cluster.client()
    e0 = rc[0]
    blocker = e0.apply_async(time.sleep, 1.5)
    queued = e0.apply_async(lambda: "ran")
    e0.abort(queued.msg_ids, block=True)
    blocker.get(10)
    with pytest.raises(error.TaskAborted):
        queued.get(10)
    assert e0.apply_sync(lambda: "alive") == "alive"


def test_abort_load_balanced_tasks_held_by_the_scheduler(make_cluster, tmp_path):
    """Tasks waiting in our scheduler (one engine, busy) are aborted there and never run."""
    cluster = make_cluster(engines=1)
    rc = cluster.client()
    lview = rc.load_balanced_view()
    go = tmp_path / "go"
    blocker = lview.apply_async(wait_for, go.exists, 30)
    wait_for(lambda: rc.queue_status()[0]["tasks"] == 1, what="the blocker to start")
    markers = [tmp_path / f"ran-{i}" for i in range(4)]
    queued = [lview.apply_async(lambda p: open(p, "w").close(), str(m)) for m in markers]
    # Not blocking: the stock engine answers the abort only once the blocker is done.
    rc.abort(queued, block=False)
    for ar in queued:  # answered while the engine is still busy
        with pytest.raises(error.TaskAborted):
            ar.get(10)
    go.touch()
    blocker.get(30)
    assert lview.apply_sync(lambda: "alive") == "alive"
    assert not any(m.exists() for m in markers)
    assert rc.queue_status()["unassigned"] == 0


def test_ipp_abort_without_ids_aborts_what_waits_on_stock_engines(make_cluster, tmp_path):
    """`ipp abort` with no ids sends an empty msg_ids list: the stock engine iterates it (null
    raised a TypeError in the engine and the command waited in vain for its reply)."""
    import subprocess
    cluster = make_cluster(engines=1)
    rc = cluster.client()
    e0 = rc[0]
    go = tmp_path / "go"
    blocker = e0.apply_async(wait_for, go.exists, 30)
    queued = e0.apply_async(lambda: "ran")
    wait_for(lambda: rc.queue_status()[0]["queue"] == 2, what="both requests to reach the engine")
    # The stock 7.1 engine answers the abort only once the blocker is done: released after the
    # aborts have surely been sent (the blocker would wait 30 s).
    p = subprocess.Popen([os.path.join(BIN_DIR, "ipp"), "abort", "-f", cluster.connection_file("client")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    go.touch()
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, out + err
    blocker.get(30)
    with pytest.raises(error.TaskAborted):
        queued.get(10)
    assert "TypeError" not in cluster.log("engine-0.log")
    assert e0.apply_sync(lambda: "alive") == "alive"


def test_forged_message_is_dropped(shared_cluster):
    rc = shared_cluster.client()
    from jupyter_client.session import Session
    import json
    info = json.load(open(shared_cluster.connection_file("client")))
    forger = Session(key=b"wrong-key", signature_scheme="hmac-sha256")
    ctx = zmq.Context()
    for channel in ("registration", "mux", "task"):
        s = ctx.socket(zmq.DEALER)
        s.linger = 0
        s.connect(f"{info['interface']}:{info[channel]}")
        forger.send(s, "queue_request" if channel == "registration" else "apply_request",
                    content={"targets": None}, ident=[list(rc._engines.values())[0].encode()] if channel == "mux" else None)
        s.send_multipart([b"garbage", b"frames"])
        assert not s.poll(300), f"forged message on {channel} was answered"
        s.close()
    ctx.term()
    assert rc[:].apply_sync(lambda: 1) == [1, 1]
    assert "dropped" in shared_cluster.log("controller.log")


@pytest.mark.parametrize("scheme", ["leastload", "lru", "weighted", "twobin", "plainrandom"])
def test_load_balanced_map_every_scheme(make_cluster, scheme):
    cluster = make_cluster(engines=2, controller_args=[f"--scheme={scheme}"])
    rc = cluster.client()
    lv = rc.load_balanced_view()
    assert lv.map_sync(lambda x: x * x, range(20)) == [x * x for x in range(20)]
    ar = lv.map_async(lambda x: x, range(6), chunksize=2)
    assert ar.get(10) == list(range(6))
    # both engines are used under every scheme
    engines = set(lv.map_async(lambda x: (time.sleep(0.05), x)[1], range(10)).get(20) and
                  rc.db_query({"engine_uuid": {"$ne": None}}, keys=["engine_uuid"]) and
                  [r["engine_uuid"] for r in rc.db_query({"engine_uuid": {"$ne": None}}, keys=["engine_uuid"])])
    assert len(engines) == 2


def test_dependencies(make_cluster):
    cluster = make_cluster(engines=2)
    rc = cluster.client()
    lv = rc.load_balanced_view()
    first = lv.apply_async(lambda: (time.sleep(0.3), time.time())[1])
    with lv.temp_flags(after=first):
        second = lv.apply_async(time.time)
    assert second.get(10) >= first.get(10)
    with lv.temp_flags(follow=first):
        followed = lv.apply_async(os.getpid)
    assert followed.get(10) == rc[first.engine_id].apply_sync(os.getpid)

    failing = lv.apply_async(lambda: 1 / 0)
    with pytest.raises(error.RemoteError):
        failing.get(10)
    with lv.temp_flags(after=failing):  # success-only dependency on a failure
        impossible = lv.apply_async(lambda: "never")
    with pytest.raises(error.RemoteError) as info:
        impossible.get(10)
    assert info.value.ename == "ImpossibleDependency"
    dep = ipp.Dependency(failing.msg_ids, success=False, failure=True)
    with lv.temp_flags(after=dep):
        on_failure = lv.apply_async(lambda: "ran after failure")
    assert on_failure.get(10) == "ran after failure"

    blocker = lv.apply_async(time.sleep, 2)
    with lv.temp_flags(after=blocker, timeout=0.3):
        timed_out = lv.apply_async(lambda: "too late")
    with pytest.raises(error.RemoteError) as info:
        timed_out.get(10)
    assert info.value.ename == "TaskTimeout"
    blocker.get(10)


def test_targets_restrict_load_balancing(make_cluster):
    cluster = make_cluster(engines=2)
    rc = cluster.client()
    lv = rc.load_balanced_view(targets=[1])
    pid1 = rc[1].apply_sync(os.getpid)
    assert set(lv.map_sync(lambda x: os.getpid(), range(6))) == {pid1}


def test_retries_after_engine_killed_mid_task(make_cluster):
    cluster = make_cluster(engines=2)
    rc = cluster.client()
    lv = rc.load_balanced_view()
    pids = rc[:].apply_sync(os.getpid)
    with lv.temp_flags(retries=1):
        ar = lv.apply_async(lambda: (__import__("time").sleep(1.5), __import__("os").getpid())[1])
    wait_for(lambda: rc.queue_status()["unassigned"] == 0 and
             any(rc.queue_status()[e]["tasks"] for e in rc.ids), what="task assignment")
    victim = next(e for e in rc.ids if rc.queue_status()[e]["tasks"])
    os.kill(pids[rc.ids.index(victim)], signal.SIGKILL)
    survivor_pid = pids[1 - rc.ids.index(victim)]
    assert ar.get(30) == survivor_pid


def test_engine_error_when_engine_dies_without_retries(make_cluster):
    cluster = make_cluster(engines=1)
    rc = cluster.client()
    pid = rc[0].apply_sync(os.getpid)
    lv = rc.load_balanced_view()
    task = lv.apply_async(time.sleep, 30)
    direct = rc[0].apply_async(time.sleep, 30)
    wait_for(lambda: rc.queue_status()[0]["tasks"] == 1, what="task assignment")
    # kill engine and nanny together: only the heartbeat can tell
    cluster.kill_group(cluster.engines[0])
    # the stock client unwraps both as RemoteError named EngineError
    for ar in (task, direct):
        with pytest.raises(error.RemoteError) as info:
            ar.get(30)
        assert info.value.ename == "EngineError"
    wait_for(lambda: rc.ids == [], what="engine removal")
    record = rc.db_query({"msg_id": task.msg_ids[0]}, keys=["result_content", "completed"])[0]
    assert record["result_content"]["ename"] == "EngineError"
    assert pid  # the engine really ran before


def test_restart_with_restore(make_cluster):
    cluster = make_cluster(engines=2)
    rc = cluster.client()
    assert rc[:].apply_sync(lambda: 1) == [1, 1]
    rc = cluster.kill_and_restore(2)
    assert rc[:].apply_sync(lambda: 2) == [2, 2]
    assert rc.load_balanced_view().apply_sync(lambda: 3) == 3


def test_shutdown_hub(make_cluster):
    cluster = make_cluster(engines=1)
    rc = cluster.client()
    rc.shutdown(hub=True, block=True)
    assert cluster.controller.wait(10) == 0
    assert not os.path.exists(cluster.connection_file("client"))
    wait_for(lambda: all(e.poll() is not None for e in cluster.engines), timeout=20, what="engines to exit")


def test_cluster_id_names_connection_files(make_cluster):
    cluster = make_cluster(engines=1, cluster_id="abc")
    assert os.path.exists(os.path.join(cluster.security_dir, "ipcontroller-abc-client.json"))
    assert cluster.client()[:].apply_sync(lambda: "ok") == ["ok"]


def test_unknown_query_gets_error_reply(shared_cluster):
    # A socket of our own: the stock client's I/O thread reads its query socket (a ZMQStream),
    # so reading that one here would race with it.
    info, session, ctx = _raw_session(shared_cluster)
    q = ctx.socket(zmq.DEALER)
    q.linger = 0
    q.connect(f"{info['interface']}:{info['registration']}")
    session.send(q, "no_such_request", content={})
    assert q.poll(20000), "no reply to an unknown query"
    msg = session.recv(q, mode=0)[1]
    q.close()
    assert msg["msg_type"] == "hub_error"
    assert "Bad Message Type" in msg["content"]["evalue"]
    assert shared_cluster.client()[0].apply_sync(lambda: 1) == 1


def test_restore_with_sqlitedb_keeps_results(make_cluster):
    cluster = make_cluster(engines=2, controller_args=["--sqlitedb"])
    rc = cluster.client()
    lv = rc.load_balanced_view()
    done = lv.map_async(lambda x: x * 10, range(5))
    assert done.get(20) == [0, 10, 20, 30, 40]
    direct = rc[0].apply_async(lambda: "direct")
    assert direct.get(10) == "direct"
    time.sleep(0.2)  # past the store's 20 ms commit interval
    msg_ids = done.msg_ids + direct.msg_ids
    rc.close()
    cluster.clients.clear()
    cluster.stop_controller(signal.SIGKILL)
    assert os.path.exists(os.path.join(cluster.profile_dir, "tasks.db"))

    cluster.start_controller(extra=["--restore"])  # --sqlitedb comes from the cluster args
    rc = cluster.client()
    wait_for(lambda: len(rc.ids) == 2, what="restored engines")
    # each map message carried a chunk of one item
    assert rc.get_result(done.msg_ids).get(20) == [[0], [10], [20], [30], [40]]
    assert rc.get_result(direct.msg_ids[0]).get(20) == "direct"
    assert set(msg_ids) <= set(rc.hub_history())
    # the engines keep working without being restarted
    assert rc.load_balanced_view().map_sync(lambda x: -x, range(4)) == [0, -1, -2, -3]


def test_curve_encryption_with_stock_peers(make_cluster, monkeypatch):
    # IPP_ENABLE_CURVE=1 is how ipyparallel 7.1 turns CURVE on: the controller reads it, writes
    # curve_serverkey to the connection files, and stock engines and clients use it.
    public, secret = zmq.curve_keypair()
    monkeypatch.setenv("IPP_ENABLE_CURVE", "1")
    monkeypatch.setenv("IPP_CURVE_PUBLICKEY", public.decode())
    monkeypatch.setenv("IPP_CURVE_SECRETKEY", secret.decode())
    cluster = make_cluster(engines=2)
    import json
    info = json.load(open(cluster.connection_file("client")))
    assert info["curve_serverkey"] == public.decode()
    rc = cluster.client()
    assert rc[:].apply_sync(lambda: "encrypted") == ["encrypted", "encrypted"]
    assert rc.load_balanced_view().map_sync(lambda x: x + 1, range(4)) == [1, 2, 3, 4]
    # a peer without the server key cannot even complete the handshake
    from jupyter_client.session import Session
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.linger = 0
    s.sndtimeo = 1000  # the handshake never completes: a send may block; that too is "no way in"
    s.connect(f"{info['interface']}:{info['registration']}")
    try:
        Session(key=info["key"].encode(), signature_scheme="hmac-sha256").send(s, "connection_request")
    except zmq.Again:
        pass
    assert not s.poll(500)
    s.close()
    ctx.term()
    log = cluster.log("controller.log")
    assert secret.decode() not in log and info["key"] not in log


@pytest.mark.parametrize("engines", ["stock", "ours"])
def test_stock_cluster_api_launches_our_controller(tmp_path, engines):
    # ipp.Cluster passes the profile dir, cluster id and (8.0+) session key as it does to the
    # stock controller: 7.1 as arguments, 8.0+ in $IPP_PROFILE_DIR/$IPP_CLUSTER_ID/$IPP_SESSION_KEY,
    # and to 8.0+ engines the engine connection file's content in $IPP_CONNECTION_INFO.
    from traitlets.config import Config
    from conftest import IPCONTROLLER, IPENGINE
    cfg = Config()
    cfg.LocalControllerLauncher.controller_cmd = [IPCONTROLLER]
    if engines == "ours":
        cfg.LocalEngineSetLauncher.engine_cmd = [IPENGINE]
        # Ours then find the engine connection file from $IPP_PROFILE_DIR and $IPP_CLUSTER_ID
        # (8.0+; 7.1 passes them as arguments); stock ones get $IPP_CONNECTION_INFO.
        cfg.Cluster.send_engines_connection_env = False
    cluster = ipp.Cluster(n=2, profile_dir=str(tmp_path / "profile"), cluster_id="c1", config=cfg)
    try:
        rc = cluster.start_and_connect_sync()
        assert sorted(rc.ids) == [0, 1]
        assert os.path.exists(os.path.join(str(tmp_path / "profile"), "security", "ipcontroller-c1-client.json"))
        if engines == "stock":
            assert len(set(rc[:].apply_sync(os.getpid))) == 2
        else:
            rc[:].execute("true", block=False).get(60)
            assert {rc.queue_status()[e]["completed"] for e in (0, 1)} == {1}
    finally:
        cluster.stop_cluster_sync()


def test_cluster_settings_from_environment_and_arguments_win(tmp_path):
    # The environment ipp.Cluster (8.0+) gives the controller; arguments still win.
    import json
    import subprocess
    from conftest import IPCONTROLLER, wait_for
    env_dir, arg_dir = tmp_path / "env_profile", tmp_path / "arg_profile"
    env = dict(os.environ, IPP_PROFILE_DIR=str(env_dir), IPP_CLUSTER_ID="fromenv",
               IPP_SESSION_KEY="0123456789abcdef-from-env", IPYTHONDIR=str(tmp_path))
    for argv, path in [([], env_dir / "security" / "ipcontroller-fromenv-client.json"),
                       ([f"--profile-dir={arg_dir}", "--cluster-id=fromarg"],
                        arg_dir / "security" / "ipcontroller-fromarg-client.json")]:
        p = subprocess.Popen([IPCONTROLLER, "--ping=300"] + argv, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_for(lambda: path.exists() and path.stat().st_size > 0 or p.poll() is not None,
                     what=str(path))
            assert p.poll() is None
            assert json.loads(path.read_text())["key"] == "0123456789abcdef-from-env"
        finally:
            p.terminate()
            p.wait(10)


def test_each_new_notification_subscriber_hears_of_every_live_engine(shared_cluster):
    # The stock client subscribes to notifications only after its connection_reply listed the
    # engines: one registered in between was never known to it (ipp.Cluster's
    # start_and_connect then waited for it until its timeout). Our hub announces every live
    # engine again to each new subscriber.
    import json
    from jupyter_client.session import Session
    info = json.load(open(shared_cluster.connection_file("client")))
    session = Session(key=info["key"].encode(), signature_scheme="hmac-sha256")
    ctx = zmq.Context.instance()
    sub = ctx.socket(zmq.SUB)
    sub.linger = 0
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(f"{info['interface']}:{info['notification']}")
    rc = shared_cluster.client()
    expected = {int(k): v for k, v in rc._engines.items()}
    assert len(expected) == 2
    heard = {}
    deadline = time.monotonic() + 10
    while heard != expected and time.monotonic() < deadline:
        if sub.poll(200):
            _, msg = session.recv(sub, mode=zmq.NOBLOCK)
            if msg and msg["header"]["msg_type"] == "registration_notification":
                heard[msg["content"]["id"]] = msg["content"]["uuid"]
    sub.close()
    assert heard == expected


def _raw_session(cluster):
    import json
    from jupyter_client.session import Session
    info = json.load(open(cluster.connection_file("engine")))
    ctx = zmq.Context.instance()
    return info, Session(key=info["key"].encode(), signature_scheme="hmac-sha256"), ctx


def test_stalled_registration_is_purged(make_cluster):
    cluster = make_cluster(engines=0, controller_args=["--IPController.registration_timeout=0.5"])
    info, session, ctx = _raw_session(cluster)
    reg = ctx.socket(zmq.DEALER)
    reg.linger = 0
    reg.connect(f"{info['interface']}:{info['registration']}")

    def register():
        session.send(reg, "registration_request", content={"uuid": "never-beats"})
        assert reg.poll(5000)
        return session.recv(reg, mode=0)[1]["content"]

    assert register()["status"] == "ok"
    assert register()["status"] == "error"  # uuid in use while the registration is pending
    wait_for(lambda: "purging stalled registration" in cluster.log("controller.log"), timeout=10,
             what="purge")
    assert register()["status"] == "ok"  # the uuid is free again
    reg.close()
    assert cluster.client().ids == []


def test_unregistration_cancels_a_pending_registration(shared_cluster):
    # As 9.1's hub: an engine leaving before its first heartbeat frees its registration at once.
    info, session, ctx = _raw_session(shared_cluster)
    reg = ctx.socket(zmq.DEALER)
    reg.linger = 0
    reg.connect(f"{info['interface']}:{info['registration']}")

    def send(msg_type, content):
        session.send(reg, msg_type, content=content)
        assert reg.poll(5000)
        return session.recv(reg, mode=0)[1]["content"]

    first = send("registration_request", {"uuid": "leaves-early"})
    assert first["status"] == "ok"
    session.send(reg, "unregistration_request", content={"id": first["id"]})  # no reply
    wait_for(lambda: send("registration_request", {"uuid": "leaves-early"})["status"] == "ok",
             timeout=10, what="the uuid to be free again")
    reg.close()


def test_malformed_requests_get_error_replies(make_cluster):
    cluster = make_cluster(engines=1)
    info, session, ctx = _raw_session(cluster)
    q = ctx.socket(zmq.DEALER)
    q.linger = 0
    q.connect(f"{info['interface']}:{info['registration']}")
    for msg_type, content in [("queue_request", {"targets": [99]}),
                              ("registration_request", {}),
                              ("result_request", {"msg_ids": 5}),
                              ("db_request", {"query": {"msg_id": {"$regex": "x"}}})]:
        session.send(q, msg_type, content=content)
        assert q.poll(5000), msg_type
        reply = session.recv(q, mode=0)[1]
        assert reply["content"]["status"] == "error", (msg_type, reply["content"])
    q.close()
    assert cluster.client()[0].apply_sync(lambda: "still serving") == "still serving"


def test_cli_help_and_bad_arguments(tmp_path):
    import subprocess
    from conftest import IPCONTROLLER
    out = subprocess.run([IPCONTROLLER, "--help"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0
    for option in ("--profile", "--profile-dir", "--cluster-id", "--ip", "--location", "--port",
                   "--ports", "--ping", "--dictdb", "--sqlitedb", "--nodb", "--scheme", "--hwm",
                   "--reuse", "--restore", "--log-level", "--log-to-file", "--work-dir"):
        assert option in out.stdout, option
    bad = subprocess.run([IPCONTROLLER, "--scheme=pure", f"--profile-dir={tmp_path}"],
                         capture_output=True, text=True, timeout=10)
    assert bad.returncode == 2 and "unknown scheme" in bad.stderr
    bad = subprocess.run([IPCONTROLLER, "--no-such-flag"], capture_output=True, text=True, timeout=10)
    assert bad.returncode == 2 and "no-such-flag" in bad.stderr


def test_unknown_traits_warn_and_port_clash_is_clear(make_cluster, tmp_path):
    import json
    import subprocess
    from conftest import IPCONTROLLER
    cluster = make_cluster(engines=0, controller_args=["--Session.debug=True", "--log-to-file"])
    logs = [f for f in os.listdir(os.path.join(cluster.profile_dir, "log")) if f.startswith("ipcontroller-")]
    assert logs, "no log file in the profile's log dir"
    text = open(os.path.join(cluster.profile_dir, "log", logs[0])).read()
    assert "Session.debug is not supported" in text
    port = json.load(open(cluster.connection_file("client")))["registration"]
    clash = subprocess.run([IPCONTROLLER, f"--profile-dir={tmp_path / 'other'}", f"--port={port}"],
                           capture_output=True, text=True, timeout=10)
    assert clash.returncode != 0 and "in use" in clash.stderr
