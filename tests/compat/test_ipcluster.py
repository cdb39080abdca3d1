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
from ipp_native import NativeView

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
    assert alive(listed[0].pop("supervisor_pid"))
    assert listed == [{"profile": "default", "cluster_id": "", "engines": 3, "running": True, "controller": "Local",
                       "registered": 3, "exited": [], "supervised": True}]
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


def test_environment_reaches_every_engine_from_the_config_and_env_flags(env):
    profile = os.path.join(env["IPYTHONDIR"], "profile_default")
    os.makedirs(profile, exist_ok=True)
    with open(os.path.join(profile, "ipcluster_config.json"), "w") as f:
        json.dump({"environment": {"IPP_ENV_A": "from-config", "IPP_ENV_B": "config"}}, f)
    run([IPCLUSTER, "start", "-n", "1", "--daemonize", "--env", "IPP_ENV_B=it's the flag", "--env=IPP_ENV_C="], env)
    run([IPCLUSTER, "engines", "-n", "1"], env)  # added later: the same environment
    out = run([IPP, "px", "--", 'echo "$IPP_ENV_A|$IPP_ENV_B|${IPP_ENV_C-unset}"'], env).stdout
    assert out.count("from-config|it's the flag|\n") == 2, out
    bad = run([IPCLUSTER, "start", "-n", "1", "--cluster-id=b", "--env", "1X=y"], env, check=False)
    assert bad.returncode != 0 and "--env wants NAME=VALUE" in bad.stderr, bad.stderr


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


def test_list_says_when_the_supervising_ipcluster_is_gone(env):
    run([IPCLUSTER, "start", "-n", "1", "--daemonize"], env)
    row = json.loads(run([IPCLUSTER, "list", "--json"], env).stdout)[0]
    assert row["supervised"] is True, row
    os.kill(row["supervisor_pid"], signal.SIGKILL)
    wait_for(lambda: not alive(row["supervisor_pid"]), timeout=10, what="ipcluster to die")
    out = run([IPCLUSTER, "list"], env).stdout
    assert f"UNSUPERVISED: its ipcluster (pid {row['supervisor_pid']}) is gone" in out, out
    assert json.loads(run([IPCLUSTER, "list", "--json"], env).stdout)[0]["supervised"] is False
    run([IPCLUSTER, "stop"], env)


def test_a_mistyped_option_is_an_error_and_stock_ones_are_ignored(env):
    for typo in ("--deamonize", "--engine-args=--load=/x.so"):
        r = run([IPCLUSTER, "start", "-n", "1", typo], env, check=False)
        assert r.returncode == 2 and f"unrecognised option '{typo}'" in r.stderr, r.stderr
    assert processes_using(env["IPYTHONDIR"]) == []
    # What the stock ipcluster takes (its options, traitlets settings) still starts a cluster.
    r = run([IPCLUSTER, "start", "-n", "1", "--daemonize", "--debug", "--IPCluster.delay=2", "--log-level", "DEBUG"], env)
    assert "--debug is not supported; ignored" in r.stderr and "--IPCluster.delay=2 is not supported" in r.stderr
    assert "--log-level DEBUG is not supported; ignored" in r.stderr, r.stderr
    run([IPCLUSTER, "stop"], env)


@pytest.mark.skipif(shutil.which("prlimit") is None, reason="needs prlimit (util-linux) to lower the fd limit")
def test_engines_the_controller_refuses_are_not_restarted_and_the_cluster_runs(env):
    # A controller started with 250 descriptors has room for a few engines only (with all their
    # connections: through the gateway all 20 would fit), the others are refused at registration,
    # exit with status 69, and ipcluster keeps the cluster up.
    r = run(["prlimit", "--nofile=250:250", IPCLUSTER, "start", "-n", "20", "--daemonize",
             "--controller-arg=--engine-gateway=never"], env)
    assert "the controller refused" in r.stderr and "out of file descriptors" in r.stderr, r.stderr
    row = json.loads(run([IPCLUSTER, "list", "--json"], env).stdout)[0]
    refused = [e for e in row["exited"] if "the controller refused its registration" in e["how"]]
    assert 0 < row["registered"] < 20 and len(refused) == 20 - row["registered"], row
    assert f"started with {row['registered']} engine(s)" in r.stdout, r.stdout
    time.sleep(3)  # past the first restart's backoff
    row = json.loads(run([IPCLUSTER, "list", "--json"], env).stdout)[0]
    assert row.get("restarts", 0) == 0, row
    text = run([IPCLUSTER, "list"], env).stdout
    assert " more exited with status 69 (the controller refused its registration))" in text, text
    out = subprocess.run([IPP, "map", "ipp.echo", "-"], env=env, input="1\n2\n3\n", capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.split() == ["1", "2", "3"], (out.stdout, out.stderr)
    # Adding engines when none fit fails and says why; the cluster keeps running. The engines
    # refused at the start each held a registration connection until they exited, so one more
    # engine may fit now: add until a call has all of its engines refused.
    registered, refused_since = row["registered"], 0
    for _ in range(4):
        more = run([IPCLUSTER, "engines", "-n", "2"], env, check=False)
        after = json.loads(run([IPCLUSTER, "list", "--json"], env).stdout)[0]
        added = after["registered"] - registered
        assert added in (0, 1, 2), (registered, after)
        assert (more.returncode == 0) == (added > 0), (added, more.returncode, more.stderr)
        registered, refused_since = after["registered"], refused_since + 2 - added
        if added == 0:
            break
    assert more.returncode != 0 and "the controller refused 2" in more.stderr, more.stderr
    # The added engines are not the supervising ipcluster's children: list knows how they ended
    # because `ipcluster engines` recorded it.
    assert len([e for e in after["exited"] if "the controller refused its registration" in e["how"]]) == len(refused) + refused_since, after
    run([IPCLUSTER, "stop"], env)


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
    # ipcluster did not send the SIGKILL: the kernel's OOM killer is the likely sender.
    assert row["exited"] == [{"pid": victim, "how": "killed (SIGKILL; possibly out of memory)"}]
    assert row["running"] and row["registered"] in (2, 3)
    text = run([IPCLUSTER, "list"], env).stdout
    assert f"/ 3 launched (1 exited: pid {victim} killed (SIGKILL; possibly out of memory))" in text, text
    assert "logs: controller " in text, text
    own_log = open(row["logs"]["ipcluster"]).read()
    assert f"engine process pid {victim} killed (SIGKILL; possibly out of memory)" in own_log, own_log
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


def cluster_file(env, profile="default", cluster_id=""):
    return json.load(open(os.path.join(env["IPYTHONDIR"], f"profile_{profile}", "security", f"cluster-{cluster_id}.json")))


def engine_pids(env):
    return {e["id"]: e["pid"] for e in json.loads(run([IPP, "engines", "--json"], env).stdout)}


def test_killed_engine_is_replaced_and_its_cause_is_shown(env):
    out = run([IPCLUSTER, "start", "-n", "2", "--daemonize", "--restart-backoff=0.1"], env).stdout
    own_log = cluster_file(env)["ipcluster_log"]
    pids = engine_pids(env)
    assert sorted(pids) == [0, 1]
    victim = pids[1]
    os.kill(victim, signal.SIGKILL)
    # A new engine (a new id to the hub) takes its place; the hub dropped the dead one at once.
    wait_for(lambda: sorted(engine_pids(env)) == [0, 2], timeout=20, what="a replacement engine 2")
    assert engine_pids(env)[0] == pids[0]
    row = json.loads(run([IPCLUSTER, "list", "--json"], env).stdout)[0]
    assert row["exited"] == [{"pid": victim, "how": "killed (SIGKILL; possibly out of memory)"}], row
    assert row["restarts"] == 1 and row["registered"] == 2, row
    assert "1 restarted" in run([IPCLUSTER, "list"], env).stdout
    procs = cluster_file(env)["engines"]["sets"][0]["state"]["processes"]
    slot = [p["slot"] for p in procs if p["pid"] == victim][0]  # engine ids follow registration, not launch
    assert sorted((p["slot"], p.get("restart", 0), "exit" in p) for p in procs) == \
        sorted([(0, 0, slot == 0), (1, 0, slot == 1), (slot, 1, False)]), procs
    assert procs[2]["slot"] == slot and procs[2]["log"].endswith(".1.log") and alive(procs[2]["pid"])
    text = open(own_log).read()
    assert f"Local engine process pid {victim} killed (SIGKILL; possibly out of memory); restarting it in 0.1 s" in text, text
    assert f"(pid {victim}) restarted as pid {procs[2]['pid']}" in text, text
    assert f"engine process pid {victim} was engine 1" in text, text
    # ipp engines: the dead engine and how it died, from the hub.
    dead = json.loads(run([IPP, "engines", "--dead", "--json"], env).stdout)
    assert [(d["id"], d["pid"], d["how"]) for d in dead] == [(1, victim, "killed (SIGKILL; possibly out of memory)")], dead
    listing = run([IPP, "engines"], env).stdout
    assert "dead engines" in listing and "possibly out of memory" in listing, listing
    # The dashboard's engine list says so too.
    import urllib.request
    url = row["dashboard"]
    base, token = url.split("/?token=")
    engines = json.load(urllib.request.urlopen(f"{base}/api/engines?token={token}", timeout=10))
    engines = engines["engines"] if isinstance(engines, dict) else engines
    gone = [e for e in engines if e["id"] == 1]
    assert gone and gone[0]["state"] == "dead" and gone[0]["death"] == "its process killed (SIGKILL; possibly out of memory)", gone
    everything = cluster_pids(env) + [owner_pid(env)]
    run([IPCLUSTER, "stop"], env)
    wait_for(lambda: not any(alive(p) for p in everything), timeout=15, what="every process to stop")
    assert processes_using(env["IPYTHONDIR"]) == []


def test_no_restart_leaves_a_killed_engine_dead(env):
    run([IPCLUSTER, "start", "-n", "2", "--daemonize", "--no-restart", "--restart-backoff=0"], env)
    own_log = cluster_file(env)["ipcluster_log"]
    victim = engine_pids(env)[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: "restarts are off (--no-restart)" in open(own_log).read(), timeout=10, what="the refusal")
    wait_for(lambda: sorted(engine_pids(env)) == [1], timeout=10, what="the hub to drop engine 0")
    assert len(cluster_file(env)["engines"]["sets"][0]["state"]["processes"]) == 2
    listed = json.loads(run([IPCLUSTER, "list", "--json"], env).stdout)[0]
    assert "restarts" not in listed and "given_up" not in listed, listed
    run([IPCLUSTER, "stop"], env)
    assert processes_using(env["IPYTHONDIR"]) == []


def test_max_restarts_stops_a_crash_loop(env, tmp_path):
    # The first engine starts; every later one crashes at once, as one with a bad plugin would.
    marker = tmp_path / "started-once"
    wrapper = tmp_path / "ipengine-once"
    wrapper.write_text(f"#!/bin/sh\nif [ -e {marker} ]; then echo 'boom: cannot start' >&2; exit 3; fi\n"
                       f"touch {marker}\nexec {os.path.join(BIN_DIR, 'ipengine')} \"$@\"\n")
    wrapper.chmod(0o755)
    profile = os.path.join(env["IPYTHONDIR"], "profile_default")
    os.makedirs(profile)
    json.dump({"engine_command": str(wrapper), "max_restarts": 2, "restart_backoff": 0.05, "restart_window": 120},
              open(os.path.join(profile, "ipcluster_config.json"), "w"))
    run([IPCLUSTER, "start", "-n", "1", "--daemonize"], env)
    own_log = cluster_file(env)["ipcluster_log"]
    os.kill(engine_pids(env)[0], signal.SIGKILL)
    refusal = "restarted 2 times within 120 s (--max-restarts 2, --restart-window 120); not restarting"
    wait_for(lambda: refusal in open(own_log).read(), timeout=15, what="the refusal in ipcluster's log")
    text = open(own_log).read()
    assert "exited with status 3; restarting it in 0.1 s (restart 2 of at most 2" in text, text
    assert "boom: cannot start" in text, text  # the end of the crashing engine's log
    # ipcluster logs its decision, then records the exit in the cluster file that `list` reads:
    # until then the last one shows as plainly "exited".
    expected = ["killed (SIGKILL; possibly out of memory)", "exited with status 3", "exited with status 3"]
    rows = []

    def listed():
        rows.append(json.loads(run([IPCLUSTER, "list", "--json"], env).stdout)[0])
        return [e["how"] for e in rows[-1]["exited"]] == expected

    try:
        wait_for(listed, timeout=15, what="the three exits in ipcluster list")
    except TimeoutError:
        raise AssertionError(rows[-1])
    row = rows[-1]
    assert row["restarts"] == 2 and row["running"], row
    wait_for(lambda: json.loads(run([IPCLUSTER, "list", "--json"], env).stdout)[0].get("given_up") == 1, timeout=10,
             what="the given-up slot in ipcluster list")
    assert "1 given up after the restart limit" in run([IPCLUSTER, "list"], env).stdout
    run([IPCLUSTER, "stop"], env)
    assert processes_using(env["IPYTHONDIR"]) == []


def test_tasks_on_a_killed_engine_are_retried_and_complete(env, tmp_path):
    run([IPCLUSTER, "start", "-n", "2", "--daemonize", "--restart-backoff=0.1"], env)
    commands = tmp_path / "commands"
    commands.write_text("".join(f"sleep 0.3; echo task {i}\n" for i in range(8)))
    farm = subprocess.Popen([IPP, "farm", str(commands), "--retries", "2"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    _started_groups.add(farm.pid)

    def busy():
        status = json.loads(run([IPP, "status", "--json"], env).stdout)
        return status.get("0", {}).get("tasks", 0) > 0

    wait_for(busy, timeout=20, interval=0.02, what="engine 0 to run a task")
    os.kill(engine_pids(env)[0], signal.SIGKILL)
    out, err = farm.communicate(timeout=60)
    assert farm.returncode == 0, out + err
    results = [json.loads(line) for line in open(f"{commands}.results.jsonl")]
    assert sorted(r["stdout"] for r in results if r["exit_code"] == 0) == sorted(f"task {i}\n" for i in range(8)), results
    wait_for(lambda: len(engine_pids(env)) == 2, timeout=20, what="the replacement engine")
    run([IPCLUSTER, "stop"], env)


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
def test_mpi_ranks_get_the_mpi_sections_environment(env):
    env = dict(env, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1", OMPI_MCA_oob_tcp_if_include="lo",
               OMPI_MCA_btl_tcp_if_include="lo", OMPI_MCA_btl="self,vader,tcp")
    profile = os.path.join(env["IPYTHONDIR"], "profile_default")
    os.makedirs(profile, exist_ok=True)
    with open(os.path.join(profile, "ipcluster_config.json"), "w") as f:
        json.dump({"environment": {"IPP_ENV_A": "global"}, "mpi": {"environment": {"IPP_ENV_M": "mpi value"}}}, f)
    run([IPCLUSTER, "start", "-n", "2", "--engines", "mpi", "--daemonize"], env)
    out = run([IPP, "px", "--", 'echo "[$IPP_ENV_A|$IPP_ENV_M]"'], env).stdout
    assert out.count("[global|mpi value]") == 2, out


def test_a_dead_mpi_rank_restarts_the_whole_mpi_set(env):
    env = dict(env, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1", OMPI_MCA_oob_tcp_if_include="lo",
               OMPI_MCA_btl_tcp_if_include="lo", OMPI_MCA_btl="self,vader,tcp")
    run([IPCLUSTER, "start", "-n", "2", "--engines", "mpi", "--daemonize", "--restart-backoff=0.1"], env)
    own_log = cluster_file(env)["ipcluster_log"]
    ranks = engine_pids(env)
    assert sorted(ranks) == [0, 1]
    mpiexec = cluster_file(env)["engines"]["sets"][0]["state"]["processes"][0]["pid"]
    os.kill(ranks[1], signal.SIGKILL)
    # mpiexec ends the other rank and its job; the whole set (2 new engines) comes back.
    wait_for(lambda: sorted(engine_pids(env)) == [2, 3], timeout=30, what="2 new MPI engines")
    assert not alive(ranks[0])
    text = open(own_log).read()
    assert f"MPI engine process pid {mpiexec} exited with status" in text, text
    assert "one rank's end ends mpiexec's whole job: all its ranks are one slot" in text, text
    row = json.loads(run([IPCLUSTER, "list", "--json"], env).stdout)[0]
    assert row["restarts"] == 1 and [e["pid"] for e in row["exited"]] == [mpiexec], row
    assert "one engine slot" in run([IPCLUSTER, "start", "--help"], env).stdout
    pids = cluster_pids(env)
    run([IPCLUSTER, "stop"], env)
    wait_for(lambda: not any(alive(p) for p in pids), timeout=15, what="mpiexec to stop")
    wait_for(lambda: processes_using(env["IPYTHONDIR"]) == [], timeout=15, what="the MPI ranks to stop")


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


# --adapt with Local "jobs" (engine processes); the batch systems' versions are in test_batch.py.

def adapt_cluster_file(env, cluster_id=""):
    path = os.path.join(env["IPYTHONDIR"], "profile_default", "security", f"cluster-{cluster_id}.json")
    return json.load(open(path))


def adapt_client(env, **kwargs):
    return ipp.Client(profile_dir=os.path.join(env["IPYTHONDIR"], "profile_default"), timeout=20, **kwargs)


def run_tasks_while_watching(rc, n, seconds, watch, retries=0):
    """Sends n load-balanced ipp.sleep(seconds) tasks, calls watch() until they are done (what it
    returns is collected), and returns (results, watched values)."""
    ar = NativeView(rc, retries=retries).map("ipp.sleep", [seconds] * n)
    seen = []
    while not ar.ready():
        seen.append(watch())
        ar.wait(0.2)
    return ar.get(1), seen


def test_local_adapt_grows_with_waiting_tasks_and_shrinks_when_idle(env):
    out = run([IPCLUSTER, "start", "--adapt", "--engines", "Local", "--max-engines", "4", "--engines-per-job", "2",
               "--idle-timeout", "1", "--daemonize", "--timeout", "30"], env).stdout
    assert "started with 0 to 4 engine(s) on demand, 2 per Local job (--adapt)" in out, out
    try:
        rc = adapt_client(env)
        assert rc.ids == []  # min 0: nothing started before work came

        def watch():
            return len(rc.ids), [j["id"] for j in adapt_cluster_file(env).get("adapt", {}).get("jobs", [])]

        results, seen = run_tasks_while_watching(rc, 200, 0.02, watch)
        assert len(results) == 200
        most_engines = max(n for n, _ in seen)
        jobs = {j for _, ids in seen for j in ids}
        assert 2 <= most_engines <= 4, seen
        assert len(jobs) >= 1 and all(j.startswith("local-") for j in jobs), jobs
        # Every engine ran in one of our jobs, as queue_status says.
        status = rc.queue_status()
        assert {status[e]["job"] for e in rc.ids} <= jobs, status
        # Idle past the timeout: the jobs are cancelled, the engines gone.
        pids = [p["pid"] for s in adapt_cluster_file(env)["engines"]["sets"] for p in s["state"]["processes"]]
        wait_for(lambda: rc.ids == [] and adapt_cluster_file(env)["adapt"]["jobs"] == [], timeout=30,
                 what="the idle jobs to be cancelled")
        wait_for(lambda: not any(alive(p) for p in pids), timeout=15, what="the engines to end")
        listed = json.loads(run([IPCLUSTER, "list", "--json"], env).stdout)[0]
        assert listed["adapt"]["max_engines"] == 4 and "stopped" not in listed["adapt"], listed
        log = open(listed["logs"]["ipcluster"]).read()
        assert "adapt: submitted job local-" in log and "adapt: cancelling job local-" in log, log
        # `ipp farm` with no engine at all: its commands wait, engines come for them.
        cmds = os.path.join(env["IPYTHONDIR"], "cmds.txt")
        with open(cmds, "w") as f:
            f.write("echo farmed\n" * 6)
        p = run([IPP, "farm", cmds, "--json"], env, check=False)
        assert p.returncode == 0 and "the commands wait for one" in p.stderr, p.stdout + p.stderr
        with open(cmds + ".results.jsonl") as f:
            assert [json.loads(line)["stdout"] for line in f] == ["farmed\n"] * 6
        rc.close()
    finally:
        run([IPCLUSTER, "stop"], env, check=False)


def test_adapt_refuses_launchers_without_jobs_before_starting_anything(env):
    p = run([IPCLUSTER, "start", "--adapt", "--engines", "MPI", "-n", "2"], env, check=False)
    assert p.returncode == 1 and "--adapt: MPI engines cannot be submitted as jobs" in p.stderr, p.stderr
    security = os.path.join(env["IPYTHONDIR"], "profile_default", "security")
    assert not os.path.isdir(security) or os.listdir(security) == [], os.listdir(security)


def test_adapt_stops_submitting_after_failed_jobs_and_says_why(env, tmp_path):
    profile = tmp_path / "ipython" / "profile_default"
    profile.mkdir(parents=True)
    # Engines that cannot start: every job ends before an engine registers.
    (profile / "ipcluster_config.json").write_text(json.dumps({"engine_command": "/bin/false"}))
    run([IPCLUSTER, "start", "--adapt", "-n", "4", "--max-failed-jobs", "2", "--daemonize", "--timeout", "30"], env)
    try:
        rc = adapt_client(env)
        ar = NativeView(rc).apply("ipp.sleep", 0.01)

        def stopped():
            return adapt_cluster_file(env).get("adapt", {}).get("stopped")

        reason = wait_for(stopped, timeout=30, what="submissions to stop")
        assert "2 job submissions in a row failed or ended before any engine registered (--max-failed-jobs 2)" in reason
        text = run([IPCLUSTER, "list"], env).stdout
        assert "adapt STOPPED SUBMITTING: 2 job submissions in a row" in text, text
        assert "ended before any engine registered (pid " in text, text
        assert not ar.ready()
        rc.close()
    finally:
        run([IPCLUSTER, "stop"], env, check=False)


def test_ctrl_c_while_engines_are_still_being_started_stops_everything(env):
    # Hundreds of engines take a while to spawn on 2 cores (each fork and exec ~ms, the engines
    # already started competing for the CPU): Ctrl-C as soon as the first one's log appears lands
    # in the spawn loop, which must stop starting more and stop those it started.
    n = 300
    p = subprocess.Popen([IPCLUSTER, "start", "-n", str(n)], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    _started_groups.add(p.pid)
    log_dir = os.path.join(env["IPYTHONDIR"], "profile_default", "log")
    wait_for(lambda: os.path.isdir(log_dir) and any(f.startswith("ipengine") for f in os.listdir(log_dir)),
             timeout=60, what="the first engine to start")
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    started = len([f for f in os.listdir(log_dir) if f.startswith("ipengine")])
    print(f"{started} of {n} engines were started before Ctrl-C took effect")
    assert started < n, "the spawn loop went on after Ctrl-C"
    wait_for(lambda: not processes_using(env["IPYTHONDIR"]), timeout=60, what="every process to stop")
    assert json.loads(run([IPCLUSTER, "list", "--json"], env).stdout) == []
