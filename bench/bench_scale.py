"""Scale: `ipcluster start -n N` of our controller and engines on this machine.

For each N: seconds from `ipcluster start` to its return with all N registered; apply-to-all
(our C++ client, one request per engine) and coalescing broadcast (the stock Python client's
BroadcastView(is_coalescing=True): one request, one reply) median times; the controller's RSS,
open descriptors and CPU while the engines idle (heartbeats only). Memory per engine is the
slope between the two sizes (the controller's own baseline cancels out).

A directly connected engine costs the controller 9 descriptors, one through the engine gateway 2
(our engines use it once half of the descriptors are in use): when N engines could need more than
the hard RLIMIT_NOFILE, the benchmark (as root only) raises the hard limit for the cluster it
starts, an administrator's decision the controller itself does not take.
"""
import glob
import json
import os
import resource
import subprocess
import tempfile
import time

from run_bench import BIN, PY, ipp_bench, log, registered_engines, rss_kib

FDS_PER_ENGINE = 9

COALESCING = r'''
import sys, time, json
import ipyparallel as ipp
f, n, reps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rc = ipp.Client(f, timeout=60)
rc.wait_for_engines(n, timeout=300)
targets = [(rc._engines[i], i) for i in rc.ids]  # (uuid, id), as BroadcastView sends them
def once():
    fut = rc._send(rc._broadcast_stream, "apply_request", content={"ipp_call": {"function": "ipp.echo", "args": 1}},
                   metadata={"targets": targets, "is_broadcast": True, "is_coalescing": True}, track_outstanding=True)
    r = ipp.AsyncResult(rc, [fut], fname="ipp.echo").get(300)
    assert len(r[0]) == n, len(r[0])
ms = []
once()
for _ in range(reps):
    t = time.perf_counter(); once(); ms.append((time.perf_counter() - t) * 1e3)
ms.sort()
print(json.dumps({"median_ms": ms[len(ms) // 2]}))
'''


def _fd_limit(n):
    """preexec_fn for the cluster: soft = hard = enough for n engines, if root may raise it
    (a container's root may not: then the hard limit stays, and engines past it are refused)."""
    need = n * FDS_PER_ENGINE + 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)

    def apply():
        if hard != resource.RLIM_INFINITY and hard < need and os.geteuid() == 0:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (need, need))
                return
            except (ValueError, OSError):
                pass
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return apply


def _cpu_s(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _first_pid(state):
    """The controller's pid in the cluster file's launcher state (a list of processes or one)."""
    if isinstance(state, dict):
        if "pid" in state:
            return state["pid"]
        state = list(state.values())
    for item in state if isinstance(state, list) else []:
        pid = _first_pid(item)
        if pid:
            return pid
    return None


def one_size(workdir, n, q):
    env = dict(os.environ, IPYTHONDIR=workdir)
    security = os.path.join(workdir, "profile_default", "security")
    cf = os.path.join(security, "ipcontroller-client.json")
    row = {"engines": n}
    t = time.monotonic()
    r = subprocess.run([os.path.join(BIN, "ipcluster"), "start", "-n", str(n), "--daemonize",
                        "--timeout", str(q["scale_timeout"])], env=env, capture_output=True, text=True,
                       timeout=q["scale_timeout"] + 120, preexec_fn=_fd_limit(n))
    row["register_s"] = time.monotonic() - t
    row["ok"] = r.returncode == 0
    if not row["ok"]:
        row["error"] = (r.stderr or r.stdout)[-1500:]
        return row
    # Engines the controller refused (out of descriptors) do not fail the start: it goes on with
    # those that registered, and says so.
    row["registered"] = registered_engines(env, cf)
    if row["registered"] < n:
        row["refused_why"] = r.stderr[-600:]
    cluster = json.load(open(glob.glob(os.path.join(security, "cluster-*.json"))[0]))
    pid = _first_pid(cluster["controller"]["state"])
    row["fd_hard_limit"] = next(int(line.split()[4]) for line in open(f"/proc/{pid}/limits")
                                if line.startswith("Max open files"))
    time.sleep(6)  # the controller hands freed heap back every 5 s
    row["controller_rss_kib"] = rss_kib(pid)
    row["controller_fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    c0, w0 = _cpu_s(pid), time.monotonic()
    time.sleep(q["scale_idle_s"])
    row["idle_cpu_percent"] = 100 * (_cpu_s(pid) - c0) / (time.monotonic() - w0)
    row["apply_all_median_ms"] = ipp_bench(cf, env, ["--tasks", "10", "--latency", "10", "--items", "10",
                                                     "--fanout", str(q["scale_reps"])])["fanout"]["median_ms"]
    r = subprocess.run([PY, "-c", COALESCING, cf, str(row["registered"]), str(q["scale_reps"])], env=env, capture_output=True,
                       text=True, timeout=900)
    if r.returncode == 0:
        row["coalescing_median_ms"] = json.loads(r.stdout.strip().splitlines()[-1])["median_ms"]
    else:
        row["coalescing_error"] = r.stderr[-1500:]
    # After the runs: what the controller keeps once requests have gone through every pipe.
    time.sleep(6)
    row["controller_rss_after_kib"] = rss_kib(pid)
    return row


def measure(procs, q):
    rows = {}
    for n in q["scale_engines"]:
        with tempfile.TemporaryDirectory() as d:
            log(f"scale: ipcluster start -n {n}")
            try:
                rows[str(n)] = one_size(d, n, q)
            except Exception as e:  # one size's failure must not lose the others' (or the run's) results
                rows[str(n)] = {"engines": n, "ok": False, "error": f"{type(e).__name__}: {e}"}
            finally:
                subprocess.run([os.path.join(BIN, "ipcluster"), "stop"], env=dict(os.environ, IPYTHONDIR=d),
                               capture_output=True, timeout=600)
            log(f"scale: {rows[str(n)]}")
    out = {"sizes": rows}
    ok = [r for r in rows.values() if r.get("ok")]
    if len(ok) >= 2:
        a, b = ok[0], ok[-1]
        engines = b.get("registered", b["engines"]) - a.get("registered", a["engines"])
        if engines > 0:
            out["kib_per_engine"] = (b["controller_rss_kib"] - a["controller_rss_kib"]) / engines
            out["fds_per_engine"] = (b["controller_fds"] - a["controller_fds"]) / engines
    return out


def rows(result):
    out = []
    for n, r in result["sizes"].items():
        if not r.get("ok"):
            out.append(f"| ipcluster start -n {n} | failed: {r.get('error', '')[-200:].strip()} | | | all registered |")
            continue
        if r.get("registered", r["engines"]) < r["engines"]:
            out.append(f"| ipcluster start -n {n}: {r['registered']} registered, the rest refused (out of descriptors: "
                       f"hard limit {r['fd_hard_limit']}), until it returned (s) | {r['register_s']:.1f} | | | zero failures |")
        else:
            out.append(f"| ipcluster start -n {n}: all registered (s) | {r['register_s']:.1f} | | | zero failures |")
        n = r.get("registered", r["engines"])
        out.append(f"| apply-to-all, {n} engines, median (ms) | {r['apply_all_median_ms']:.0f} | | | |")
        if "coalescing_median_ms" in r:
            out.append(f"| coalescing broadcast, {n} engines, median (ms) | {r['coalescing_median_ms']:.0f} | | | |")
        out.append(f"| controller idle with {n} engines: CPU (% of a core) / RSS (MiB) | "
                   f"{r['idle_cpu_percent']:.1f} / {r['controller_rss_kib'] / 1024:.0f} | | | |")
    if "kib_per_engine" in result:
        out.append(f"| controller memory per engine (KiB) | {result['kib_per_engine']:.0f} | | | <= 32 |")
        out.append(f"| controller descriptors per engine | {result['fds_per_engine']:.1f} | | | |")
    return out
