"""ipcluster: start/stop/list/engines/clean with local and MPI engines, as a user runs them."""
import json
import os
import shutil
import signal
import subprocess
import time

import pytest

import ipyparallel as ipp

from conftest import BIN_DIR, IPCONTROLLER, LIB_DIR, _started_groups, wait_for

IPCLUSTER = os.path.join(BIN_DIR, "ipcluster")
IPP = os.path.join(BIN_DIR, "ipp")


def all_cluster_pids(ipython_dir):
    pids = []
    for root, _, files in os.walk(ipython_dir):
        for name in files:
            if name.startswith("cluster-") and name.endswith(".json"):
                try:
                    data = json.load(open(os.path.join(root, name)))
                except ValueError:
                    continue
                pids += [p["pid"] for p in data["controller"]["state"].get("processes", [])]
                for s in data["engines"]["sets"]:
                    pids += [p["pid"] for p in s["state"].get("processes", [])]
                if data.get("ipcluster_pid"):
                    pids.append(data["ipcluster_pid"])
    return pids


def processes_using(ipython_dir):
    """Live processes whose command line names ipython_dir (our controllers and engines)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
            if ipython_dir in cmdline and alive(int(entry)):
                found.append((int(entry), cmdline))
        except OSError:
            continue
    return found


@pytest.fixture
def env(tmp_path):
    e = dict(os.environ, IPYTHONDIR=str(tmp_path / "ipython"))
    yield e
    # Stop whatever a test left running in its profiles; if ipcluster stop itself fails, kill
    # the processes its cluster files name, so no test leaves anything behind.
    leftovers = all_cluster_pids(e["IPYTHONDIR"])
    for profile in ("default", "other"):
        for cid in ("", "a", "b"):
            subprocess.run([IPCLUSTER, "stop", f"--profile={profile}", f"--cluster-id={cid}"], env=e,
                           capture_output=True, timeout=60)
    for pid in leftovers:
        for kill in (os.killpg, os.kill):
            try:
                kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def run(args, env, timeout=120, check=True):
    r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)
    if check:
        assert r.returncode == 0, f"{args} -> {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


def cluster_pids(env, profile="default", cluster_id=""):
    path = os.path.join(env["IPYTHONDIR"], f"profile_{profile}", "security", f"cluster-{cluster_id}.json")
    data = json.load(open(path))
    pids = [p["pid"] for p in data["controller"]["state"]["processes"]]
    for s in data["engines"]["sets"]:
        pids += [p["pid"] for p in s["state"].get("processes", [])]
    return pids


def alive(pid):
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (ProcessLookupError, FileNotFoundError):
        return False


def owner_pid(env, profile="default", cluster_id=""):
    path = os.path.join(env["IPYTHONDIR"], f"profile_{profile}", "security", f"cluster-{cluster_id}.json")
    return json.load(open(path))["ipcluster_pid"]


def test_start_list_grow_stop(env):
    out = run([IPCLUSTER, "start", "-n", "3", "--daemonize"], env).stdout
    assert "started with 3 engine(s)" in out
    pids = cluster_pids(env)
    assert len(pids) == 4 and all(alive(p) for p in pids)
    engines = json.loads(run([IPP, "engines", "--json"], env).stdout)
    assert [e["id"] for e in engines] == [0, 1, 2]
    listed = json.loads(run([IPCLUSTER, "list", "--json"], env).stdout)
    logs = listed[0].pop("logs")
    assert listed[0].pop("dashboard").startswith("http://127.0.0.1:")
    assert listed == [{"profile": "default", "cluster_id": "", "engines": 3, "running": True, "controller": "Local",
                       "registered": 3, "exited": []}]
    assert os.path.isfile(logs["controller"]) and os.path.isfile(logs["ipcluster"]), logs
    # the stock Python client uses the cluster as it would a stock one
    os.environ["IPYTHONDIR"] = env["IPYTHONDIR"]
    try:
        rc = ipp.Client(timeout=10)
        assert rc.ids == [0, 1, 2]
        for _ in range(30):  # PUB/SUB: output before the IOPub subscription arrived is lost
            ar = rc[:].execute("echo $$", block=False)
            if ar.wait_for_output(2):
                break
        assert len(ar.stdout) == 3
        rc.close()
    finally:
        del os.environ["IPYTHONDIR"]
    run([IPCLUSTER, "engines", "-n", "2"], env)
    assert len(json.loads(run([IPP, "engines", "--json"], env).stdout)) == 5
    pids = cluster_pids(env)
    assert len(pids) == 6
    run([IPCLUSTER, "stop"], env)
    wait_for(lambda: not any(alive(p) for p in pids), timeout=15, what="every process to stop")
    assert json.loads(run([IPCLUSTER, "list", "--json"], env).stdout) == []
    again = run([IPCLUSTER, "stop"], env, check=False)
    assert again.returncode == 1 and "no cluster file" in again.stderr


def test_foreground_start_stops_everything_on_ctrl_c(env):
    p = subprocess.Popen([IPCLUSTER, "start", "-n", "2"], env=env, stdout=subprocess.PIPE, text=True,
                         start_new_session=True)
    _started_groups.add(p.pid)
    line = p.stdout.readline()
    assert "started with 2 engine(s)" in line
    pids = cluster_pids(env)
    p.send_signal(signal.SIGINT)
    assert p.wait(30) == 130  # as a shell reports a command ended by Ctrl-C
    wait_for(lambda: not any(alive(x) for x in pids), timeout=15, what="every process to stop")


def test_failing_engines_are_reported_with_their_log(env):
    r = run([IPCLUSTER, "start", "-n", "2", "--daemonize", "--timeout=20", "--engine-arg=--load=/no/such/plugin.so"],
            env, check=False)
    assert r.returncode == 1
    assert "only 0 of 2 engines registered (2 exited" in r.stderr, r.stderr
    assert "exited with status" in r.stderr, r.stderr
    assert "/no/such/plugin.so" in r.stderr  # the tail of a failing engine's log
    assert json.loads(run([IPCLUSTER, "list", "--json"], env).stdout) == []


def test_launcher_names_are_case_insensitive_and_checked(env):
    run([IPCLUSTER, "start", "-n", "1", "--daemonize", "--engines", "LOCAL", "--controller", "LocalControllerLauncher"], env)
    run([IPCLUSTER, "stop"], env)
    bad = run([IPCLUSTER, "start", "-n", "1", "--engines", "kubernetes"], env, check=False)
    assert bad.returncode == 1 and "unknown engine launcher 'kubernetes'" in bad.stderr


def test_two_clusters_in_one_profile_and_clean(env):
    run([IPCLUSTER, "start", "-n", "1", "--daemonize", "--cluster-id=a"], env)
    run([IPCLUSTER, "start", "-n", "2", "--daemonize", "--cluster-id=b"], env)
    ids = sorted((c["cluster_id"], c["engines"]) for c in json.loads(run([IPCLUSTER, "list", "--json"], env).stdout))
    assert ids == [("a", 1), ("b", 2)]
    dup = run([IPCLUSTER, "start", "-n", "1", "--daemonize", "--cluster-id=a"], env, check=False)
    assert dup.returncode == 1 and "already running" in dup.stderr
    assert len(json.loads(run([IPP, "engines", "--json", "--cluster-id=b"], env).stdout)) == 2
    pids_a = cluster_pids(env, cluster_id="a") + [owner_pid(env, cluster_id="a")]
    for pid in reversed(pids_a):
        os.kill(pid, signal.SIGKILL)  # cluster a dies without ipcluster stop (its ipcluster first)
    wait_for(lambda: not any(alive(p) for p in pids_a), timeout=10, what="cluster a to die")
    out = run([IPCLUSTER, "clean"], env).stdout
    assert "1 stopped cluster" in out
    assert [c["cluster_id"] for c in json.loads(run([IPCLUSTER, "list", "--json"], env).stdout)] == ["b"]


def test_added_engines_get_the_start_engine_args(env):
    plugin = os.path.join(LIB_DIR, "libipp_example_pi.so")
    run([IPCLUSTER, "start", "-n", "1", "--daemonize", f"--engine-arg=--load={plugin}"], env)
    run([IPCLUSTER, "engines", "-n", "1"], env)
    functions = {f["name"]: f for f in json.loads(run([IPP, "functions", "--json"], env).stdout)}
    assert functions["pi.sample"]["engines"] == [0, 1], functions.get("pi.sample")


def test_list_takes_a_profile_dir(env, tmp_path):
    profile = str(tmp_path / "my profile")
    run([IPCLUSTER, "start", "-n", "1", "--daemonize", f"--profile-dir={profile}"], env)
    try:
        listed = json.loads(run([IPCLUSTER, "list", "--json", f"--profile-dir={profile}"], env).stdout)
        assert [(c["profile"], c["running"], c["registered"]) for c in listed] == [(profile, True, 1)], listed
        assert json.loads(run([IPCLUSTER, "list", "--json"], env).stdout) == []  # not in $IPYTHONDIR
    finally:
        run([IPCLUSTER, "stop", f"--profile-dir={profile}"], env)


def test_killed_controller_leaves_no_connection_files(env):
    run([IPCLUSTER, "start", "-n", "1", "--daemonize", "--no-restart"], env)
    security = os.path.join(env["IPYTHONDIR"], "profile_default", "security")
    files = [os.path.join(security, f"ipcontroller-{role}.json") for role in ("client", "engine")]
    assert all(os.path.exists(f) for f in files)
    owner = owner_pid(env)
    os.kill(cluster_pids(env)[0], signal.SIGKILL)
    wait_for(lambda: not alive(owner), timeout=15, what="ipcluster to stop the cluster")
    assert [f for f in files if os.path.exists(f)] == []


def test_clean_removes_connection_files_nobody_listens_on(env):
    # A controller run by hand has no cluster file: only whether it still listens tells.
    security = os.path.join(env["IPYTHONDIR"], "profile_default", "security")
    files = [os.path.join(security, f"ipcontroller-{role}.json") for role in ("client", "engine", "dashboard")]
    controller = subprocess.Popen([IPCONTROLLER], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True)
    _started_groups.add(controller.pid)
    wait_for(lambda: all(os.path.exists(f) for f in files), timeout=30, what="the connection files")
    assert "0 stale connection file(s)" in run([IPCLUSTER, "clean"], env).stdout
    assert all(os.path.exists(f) for f in files)
    controller.kill()
    controller.wait(10)
    assert "3 stale connection file(s)" in run([IPCLUSTER, "clean"], env).stdout
    assert [f for f in files if os.path.exists(f)] == []


def test_start_needs_an_engine(env):
    r = run([IPCLUSTER, "start", "-n", "0", "--daemonize"], env, check=False)
    assert r.returncode == 1 and "-n must be at least 1" in r.stderr, r.stderr
    assert json.loads(run([IPCLUSTER, "list", "--json"], env).stdout) == []


def test_requested_shutdown_is_not_logged_as_an_error(env):
    run([IPCLUSTER, "start", "-n", "1", "--daemonize"], env)
    path = os.path.join(env["IPYTHONDIR"], "profile_default", "security", "cluster-.json")
    log, owner = json.load(open(path))["ipcluster_log"], owner_pid(env)
    run([IPP, "shutdown"], env)
    wait_for(lambda: not alive(owner), timeout=15, what="ipcluster to stop the cluster")
    text = open(log).read()
    assert "exited with status 0 (shut down on request); stopping the engines" in text, text
    assert "error" not in text.lower() and "warning" not in text.lower(), text


def test_config_file_and_help(env):
    profile = os.path.join(env["IPYTHONDIR"], "profile_other")
    os.makedirs(profile)
    json.dump({"n": 2, "engine_args": [f"--load={os.path.join(LIB_DIR, 'libipp_example_pi.so')}"]},
              open(os.path.join(profile, "ipcluster_config.json"), "w"))
    run([IPCLUSTER, "start", "--profile=other", "--daemonize"], env)
    r = subprocess.run([IPP, "map", "pi.sample", "-", "--profile=other"], input='{"samples": 10, "seed": 1}\n',
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and json.loads(r.stdout)["samples"] == 10, r.stderr
    run([IPCLUSTER, "stop", "--profile=other"], env)
    h = run([IPCLUSTER, "start", "--help"], env).stdout
    for opt in ("--engines", "--controller", "--daemonize", "--cluster-id", "--profile", "-n"):
        assert opt in h


def test_stop_is_quick_and_leaves_nothing(env):
    run([IPCLUSTER, "start", "-n", "2", "--daemonize"], env)
    pids = cluster_pids(env) + [owner_pid(env)]
    assert len(pids) == 4 and all(alive(p) for p in pids)
    start = time.monotonic()
    run([IPCLUSTER, "stop"], env)
    elapsed = time.monotonic() - start
    print(f"ipcluster stop of 2 engines took {elapsed:.2f} s")
    assert [p for p in pids if alive(p)] == []
    assert processes_using(env["IPYTHONDIR"]) == []
    assert elapsed < 1.5


def test_launcher_exiting_at_once_fails_the_start_at_once(env, tmp_path):
    # An mpiexec that refuses its ranks, as Open MPI does for 3 ranks on 2 slots.
    mpiexec = tmp_path / "mpiexec"
    mpiexec.write_text("#!/bin/sh\necho 'There are not enough slots available in the system' >&2\nexit 1\n")
    mpiexec.chmod(0o755)
    profile = os.path.join(env["IPYTHONDIR"], "profile_default")
    os.makedirs(profile)
    json.dump({"engines": "MPI", "mpi": {"mpiexec": str(mpiexec)}}, open(os.path.join(profile, "ipcluster_config.json"), "w"))
    start = time.monotonic()
    r = run([IPCLUSTER, "start", "-n", "3", "--daemonize", "--timeout=60"], env, check=False)
    elapsed = time.monotonic() - start
    assert r.returncode == 1, r.stdout + r.stderr
    assert elapsed < 5, elapsed
    assert "only 0 of 3 engines registered (1 exited: every engine launcher process has ended)" in r.stderr, r.stderr
    assert "exited with status 1" in r.stderr and "not enough slots" in r.stderr, r.stderr
    assert "logs: controller " in r.stderr, r.stderr
    assert json.loads(run([IPCLUSTER, "list", "--json"], env).stdout) == []
    wait_for(lambda: processes_using(env["IPYTHONDIR"]) == [], timeout=5, what="the controller to be gone")


def test_config_errors_name_the_place_and_the_nearest_key(env):
    profile = os.path.join(env["IPYTHONDIR"], "profile_default")
    os.makedirs(profile)
    config = os.path.join(profile, "ipcluster_config.json")
    open(config, "w").write('{"enignes": "MPI"}')
    r = run([IPCLUSTER, "start", "-n", "1"], env, check=False)
    assert r.returncode == 1
    assert f'unknown key "enignes" in {config}; did you mean "engines"?' in r.stderr, r.stderr
    open(config, "w").write('{\n  "n": 2,\n}\n')
    r = run([IPCLUSTER, "start", "-n", "1"], env, check=False)
    assert r.returncode == 1 and f"{config}:3:1: " in r.stderr, r.stderr
    assert processes_using(env["IPYTHONDIR"]) == []


def test_dead_engine_is_logged_and_listed(env):
    out = run([IPCLUSTER, "start", "-n", "3", "--daemonize"], env).stdout
    assert "logs: controller " in out and "; engines " in out, out
    data = json.load(open(os.path.join(env["IPYTHONDIR"], "profile_default", "security", "cluster-.json")))
    victim = data["engines"]["sets"][0]["state"]["processes"][1]["pid"]
    os.kill(victim, signal.SIGKILL)

    def listed():
        rows = json.loads(run([IPCLUSTER, "list", "--json"], env).stdout)
        return rows if rows[0]["exited"] and rows[0]["exited"][0]["how"] != "exited" else None

    row = wait_for(listed, timeout=10, what="the engine's death to be recorded")[0]
    assert row["exited"] == [{"pid": victim, "how": "killed by SIGKILL"}]
    assert row["running"] and row["registered"] in (2, 3)
    text = run([IPCLUSTER, "list"], env).stdout
    assert f"/ 3 launched (1 exited: pid {victim} killed by SIGKILL)" in text, text
    assert "logs: controller " in text, text
    own_log = open(row["logs"]["ipcluster"]).read()
    assert f"engine process pid {victim} killed by SIGKILL" in own_log, own_log
    controller = data["controller"]["state"]["processes"][0]["pid"]
    os.kill(controller, signal.SIGSTOP)
    try:
        start = time.monotonic()
        text = run([IPCLUSTER, "list"], env).stdout
        assert "? registered (controller not answering) / 3 launched" in text, text
        assert time.monotonic() - start < 5
    finally:
        os.kill(controller, signal.SIGCONT)
    run([IPCLUSTER, "stop"], env)
    assert processes_using(env["IPYTHONDIR"]) == []


def test_256_local_engines(env):
    start = time.monotonic()
    run([IPCLUSTER, "start", "-n", "256", "--daemonize", "--timeout=60"], env, timeout=120)
    elapsed = time.monotonic() - start
    print(f"256 engines registered in {elapsed:.1f} s")
    assert len(json.loads(run([IPP, "engines", "--json", "--connect-timeout=30"], env).stdout)) == 256
    pids = cluster_pids(env)
    run([IPCLUSTER, "stop"], env, timeout=120)
    wait_for(lambda: not any(alive(p) for p in pids), timeout=30, what="256 engines to stop")


def test_registration_flood_does_not_stop_service(env):
    # 254 engines registering at once while a client keeps working on the first two.
    import threading
    run([IPCLUSTER, "start", "-n", "2", "--daemonize"], env)
    stop, rounds, failures = threading.Event(), [], []

    def client():
        while not stop.is_set():
            t = time.monotonic()
            r = subprocess.run([IPP, "map", "ipp.echo", "-", "--connect-timeout=30"], env=env, timeout=60,
                               input="".join(f"{i}\n" for i in range(5)), capture_output=True, text=True)
            if r.returncode != 0 or r.stdout.split() != [str(i) for i in range(5)]:
                failures.append(r.stderr[-500:])
            rounds.append(time.monotonic() - t)

    worker = threading.Thread(target=client)
    worker.start()
    try:
        run([IPCLUSTER, "engines", "-n", "254", "--timeout=90"], env, timeout=150)
    finally:
        stop.set()
        worker.join(90)
    pids = cluster_pids(env)
    assert len(json.loads(run([IPP, "engines", "--json"], env).stdout)) == 256
    run([IPCLUSTER, "stop"], env, timeout=120)
    wait_for(lambda: not any(alive(p) for p in pids), timeout=30, what="engines to stop")
    assert not failures, failures
    assert len(rounds) >= 2 and max(rounds) < 20, rounds
    print(f"{len(rounds)} client rounds during the flood, slowest {max(rounds):.2f} s")


@pytest.mark.skipif(shutil.which("mpiexec") is None, reason="mpiexec not installed")
def test_mpi_engines(env):
    env = dict(env, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1", OMPI_MCA_oob_tcp_if_include="lo",
               OMPI_MCA_btl_tcp_if_include="lo", OMPI_MCA_btl="self,vader,tcp")
    run([IPCLUSTER, "start", "-n", "3", "--engines", "mpi", "--daemonize"], env)
    engines = json.loads(run([IPP, "engines", "--json"], env).stdout)
    assert len(engines) == 3
    pids = cluster_pids(env)
    assert len(pids) == 2  # the controller and mpiexec
    run([IPCLUSTER, "stop"], env)
    wait_for(lambda: not any(alive(p) for p in pids), timeout=15, what="mpiexec to stop")
    wait_for(lambda: not any(alive(e["pid"]) for e in engines), timeout=15, what="the MPI ranks to stop")


@pytest.mark.skipif(shutil.which("mpiexec") is None, reason="mpiexec not installed")
def test_mpiexec_refusing_its_ranks_fails_the_start_at_once(env):
    env = dict(env, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_oob_tcp_if_include="lo")
    env.pop("OMPI_MCA_rmaps_base_oversubscribe", None)
    ranks = os.cpu_count() + 1  # more than the slots Open MPI allows without --oversubscribe
    start = time.monotonic()
    r = run([IPCLUSTER, "start", "-n", str(ranks), "--engines", "mpi", "--daemonize", "--timeout=60"], env, check=False)
    assert r.returncode == 1 and time.monotonic() - start < 10, r.stderr
    assert "every engine launcher process has ended" in r.stderr and "slots" in r.stderr, r.stderr
    wait_for(lambda: processes_using(env["IPYTHONDIR"]) == [], timeout=5, what="the controller to be gone")
