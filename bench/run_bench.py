"""Benchmarks: our stack and stock ipyparallel 7.1, measured in one run on this machine.

    /usr/bin/python3 bench/run_bench.py [--quick] [--out bench/results]

Writes results.json, results.md (the table the README shows) and PNG plots (gnuplot) into --out.
--quick is the CI smoke run: tiny sizes that check the harness works, numbers meaningless.
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time


HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ.get("IPP_BIN_DIR", os.path.join(HERE, "..", "build", "bin"))
PY = "/usr/bin/python3"


def log(*a):
    print("[bench]", *a, file=sys.stderr, flush=True)


class Procs:
    """Processes started by the benchmark; all stopped (by process group) at the end."""

    def __init__(self):
        self.procs = []

    def start(self, argv, env, logfile):
        p = subprocess.Popen(argv, env=env, stdout=open(logfile, "ab"), stderr=subprocess.STDOUT,
                             start_new_session=True)
        self.procs.append(p)
        return p

    def stop(self):
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        self.procs = []


def wait_file(path, timeout=30):
    end = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > end:
            raise TimeoutError(path)
        time.sleep(0.02)


def group_cpu_seconds(pgid):
    """User + system CPU seconds of every live process in process group `pgid` (the stock
    controller runs its schedulers as processes of its own group)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after the name: state, ppid, pgrp, ...
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def start_cluster(procs, workdir, controller, engines, n, controller_args=()):
    """controller: 'ours' | 'stock'; engines: 'ours' | 'stock'. Returns (env, client file, ctl proc)."""
    env = dict(os.environ, IPYTHONDIR=workdir)
    profile = os.path.join(workdir, "profile_default")
    client_file = os.path.join(profile, "security", "ipcontroller-client.json")
    if controller == "ours":
        argv = [os.path.join(BIN, "ipcontroller"), "--log-level=WARN", *controller_args]
    else:
        argv = [PY, "-m", "ipyparallel.controller", "--log-level=30", *controller_args]
    ctl = procs.start(argv, env, os.path.join(workdir, "controller.log"))
    wait_file(client_file)
    for i in range(n):
        if engines == "ours":
            argv = [os.path.join(BIN, "ipengine"), "--log-level=WARN"]
        else:
            argv = [PY, "-m", "ipyparallel.engine", "--log-level=30"]
        procs.start(argv, env, os.path.join(workdir, f"engine-{i}.log"))
    wait_engines(env, client_file, n)
    return env, client_file, ctl


def registered_engines(env, client_file):
    """How many engines the controller has registered (0 when it does not answer)."""
    r = subprocess.run([os.path.join(BIN, "ipp"), "status", "--json", "-f", client_file], env=env,
                       capture_output=True, text=True, timeout=120)
    return len([k for k in json.loads(r.stdout) if k.isdigit()]) if r.returncode == 0 else 0


def wait_engines(env, client_file, n, timeout=120):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if registered_engines(env, client_file) >= n:
            return
        time.sleep(0.2)
    raise TimeoutError(f"{n} engines did not register")


PY_CLIENT = r'''
import json, sys, time, statistics
import ipyparallel as ipp
f, tasks, rtts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rc = ipp.Client(f, timeout=30)
lv = rc.load_balanced_view()
def noop(x=None):
    return x
lv.map_sync(noop, range(50))
t = time.perf_counter()
ars = [lv.apply_async(noop) for _ in range(tasks)]
for ar in ars:
    ar.get(120)
lb = tasks / (time.perf_counter() - t)
e0 = rc[rc.ids[0]]
e0.apply_sync(noop)
lat = []
for _ in range(rtts):
    t = time.perf_counter()
    e0.apply_sync(noop)
    lat.append((time.perf_counter() - t) * 1e6)
lat.sort()
print(json.dumps({"lb_tasks_per_s": lb, "direct_rtt": {"median_us": lat[len(lat) // 2], "p99_us": lat[int(0.99 * len(lat))]}}))
'''


def python_client(client_file, env, tasks, rtts):
    r = subprocess.run([PY, "-c", PY_CLIENT, client_file, str(tasks), str(rtts)], env=env, capture_output=True,
                       text=True, timeout=900)
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-2000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


PY_NATIVE_CLIENT = r"""
import json, sys, time
import numpy as np
import ipyparallel as ipp
from ipp_native import NativeView, engine_kinds
f, tasks, reps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rc = ipp.Client(f, timeout=30)
rc.wait_for_engines(2, timeout=60)
kinds = engine_kinds(rc)
lv = rc.load_balanced_view(targets=[e for e, k in kinds.items() if k == "python"])
nv = NativeView(rc)
def noop(x=None):
    return x
def sum_and_double(a):
    return a.sum(), a * 2
a = np.random.default_rng(1).random(1 << 17)  # 1 MiB of float64
lv.map_sync(noop, range(50))
nv.map("ipp.echo", range(50)).get(60)
def median_ms(call):
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        total, doubled = call()
        times.append((time.perf_counter() - t) * 1e3)
        assert abs(total - a.sum()) < 1e-6 * a.sum() and np.array_equal(np.asarray(doubled), a * 2)
    return sorted(times)[len(times) // 2]
out = {"python_1mib_ms": median_ms(lambda: lv.apply_async(sum_and_double, a).get(60)),
       "native_1mib_ms": median_ms(lambda: nv.apply("vec.sum_and_double", None, buffers=[a], dtype="float64").get(60))}
for name, submit in (("python", lambda: lv.apply_async(noop)), ("native", lambda: nv.apply("ipp.echo", None))):
    t = time.perf_counter()
    ars = [submit() for _ in range(tasks)]
    for ar in ars:
        ar.get(120)
    out[name + "_noop_tasks_per_s"] = tasks / (time.perf_counter() - t)
print(json.dumps(out))
"""


def from_python(procs, workdir, tasks, reps):
    """Our controller, one stock Python engine and one native engine (with the example plugin);
    the Python client runs the same computations on each."""
    env = dict(os.environ, IPYTHONDIR=workdir)
    client_file = os.path.join(workdir, "profile_default", "security", "ipcontroller-client.json")
    procs.start([os.path.join(BIN, "ipcontroller"), "--log-level=WARN"], env, os.path.join(workdir, "controller.log"))
    wait_file(client_file)
    plugin = os.path.join(BIN, "..", "lib", "libipp_example_pi.so")
    procs.start([os.path.join(BIN, "ipengine"), "--log-level=WARN", f"--load={plugin}"], env,
                os.path.join(workdir, "engine-native.log"))
    procs.start([PY, "-m", "ipyparallel.engine", "--log-level=30"], env, os.path.join(workdir, "engine-python.log"))
    wait_engines(env, client_file, 2)
    r = subprocess.run([PY, "-c", PY_NATIVE_CLIENT, client_file, str(tasks), str(reps)], env=env,
                       capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-2000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def ipp_bench(client_file, env, args):
    r = subprocess.run([os.path.join(BIN, "ipp_bench"), "-f", client_file, *args], env=env, capture_output=True,
                       text=True, timeout=900)
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-2000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def sse_viewers(url, n):
    """n browser-like viewers of the dashboard's /api/stream, each reading every event on its own
    thread. Returns a stop() that closes them and gives the events each one received."""
    import threading
    import urllib.parse
    import urllib.request
    parts = urllib.parse.urlsplit(url)
    token = urllib.parse.parse_qs(parts.query)["token"][0]
    stream_url = f"{parts.scheme}://{parts.netloc}/api/stream?token={token}"
    stopping = threading.Event()
    counts = [0] * n
    responses = []

    def view(i):
        with urllib.request.urlopen(stream_url, timeout=30) as r:
            responses.append(r)
            while not stopping.is_set():
                line = r.readline()
                if not line:
                    return
                if line.startswith(b"event: update"):
                    counts[i] += 1

    threads = [threading.Thread(target=view, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()

    def stop():
        stopping.set()
        for r in list(responses):
            try:
                r.fp.raw._sock.shutdown(2)  # unblocks the reader's readline
            except Exception:
                pass
        for t in threads:
            t.join(timeout=5)
        return counts
    return stop


def dashboard_cost(procs, workdir, n, tasks, reps):
    """LB throughput (C++ client, n C++ engines) with no dashboard viewer and with 10 SSE viewers,
    in alternating rounds on one cluster; medians of each."""
    env, cf, _ = start_cluster(procs, workdir, "ours", "ours", n, ["--hwm=0", "--nodb"])
    with open(os.path.join(os.path.dirname(cf), "ipcontroller-dashboard.json")) as f:
        url = json.load(f)["url"]
    args = ["--tasks", str(tasks), "--latency", "10", "--items", "10"]
    ipp_bench(cf, env, args)  # warm-up
    none, viewed, events = [], [], []

    def with_viewers():
        stop = sse_viewers(url, 10)
        time.sleep(1)  # every viewer connected and past its first event
        viewed.append(ipp_bench(cf, env, args)["lb_tasks_per_s"])
        events.append(min(stop()))
        # The server notices a closed viewer when its next event fails to send: let it, so that
        # the next round's viewers are not refused (it serves 16 streams at most).
        time.sleep(2.5)

    # ABBA order: a later run is slower (the controller remembers more tasks), which must not
    # count against either side.
    for i in range(reps):
        if i % 2:
            with_viewers()
            none.append(ipp_bench(cf, env, args)["lb_tasks_per_s"])
        else:
            none.append(ipp_bench(cf, env, args)["lb_tasks_per_s"])
            with_viewers()
    med = lambda v: sorted(v)[len(v) // 2]
    return {"engines": n, "tasks": tasks, "no_viewer_tasks_per_s": med(none), "ten_viewers_tasks_per_s": med(viewed),
            "ratio": med(viewed) / med(none), "min_events_per_viewer": min(events), "rounds": reps}


def measure(q):
    results = {"date": datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC"),
               "machine": f"{platform.node()}: {os.cpu_count()} cores, {platform.machine()}, "
                          f"{round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30)} GiB",
               "quick": q["quick"]}
    procs = Procs()
    try:
        # (a) Python client + stock Python engines: stock controller vs ours.
        stock_vs_ours = {}
        for n in q["py_engines"]:
            row = {}
            for ctl in ("stock", "ours"):
                with tempfile.TemporaryDirectory() as d:
                    log(f"python client, {n} stock engines, {ctl} controller")
                    env, cf, ctl_proc = start_cluster(procs, d, ctl, "stock", n)
                    cpu0 = group_cpu_seconds(ctl_proc.pid)
                    row[ctl] = python_client(cf, env, q["py_tasks"], q["py_rtts"])
                    # Requests the client makes: its tasks, 50 + 1 warm-up, its round trips.
                    requests = q["py_tasks"] + 51 + q["py_rtts"]
                    row[ctl]["controller_cpu_us_per_request"] = (group_cpu_seconds(ctl_proc.pid) - cpu0) * 1e6 / requests
                    procs.stop()
            row["throughput_ratio"] = row["ours"]["lb_tasks_per_s"] / row["stock"]["lb_tasks_per_s"]
            stock_vs_ours[str(n)] = row
        results["python_stack"] = stock_vs_ours

        # (b) Our C++ client + C++ engines through our controller.
        ours = {}
        for n in q["cpp_engines"]:
            with tempfile.TemporaryDirectory() as d:
                log(f"C++ client, {n} C++ engines, our controller (hwm 0)")
                env, cf, _ = start_cluster(procs, d, "ours", "ours", n, ["--hwm=0", "--nodb"])
                args = ["--tasks", str(q["cpp_tasks"]), "--latency", str(q["cpp_rtts"]), "--items", str(q["map_items"]),
                        "--chunk", "1000"]
                if n == q["cpp_engines"][-1]:
                    args += ["--data-mib", *map(str, q["data_mib"])]
                ours[str(n)] = ipp_bench(cf, env, args)
                procs.stop()
        results["cpp_stack"] = ours

        # The dashboard's cost: LB throughput with 10 SSE viewers of /api/stream vs none.
        with tempfile.TemporaryDirectory() as d:
            log("dashboard: LB throughput with 10 SSE viewers vs none")
            results["dashboard"] = dashboard_cost(procs, d, q["cpp_engines"][-1], q["dash_tasks"], q["dash_reps"])
            procs.stop()

        # From Python: native functions (ipp_native) beside Python functions on a stock engine.
        with tempfile.TemporaryDirectory() as d:
            log("python client, 1 native + 1 stock engine, our controller")
            results["from_python"] = from_python(procs, d, q["native_py_tasks"], q["native_py_reps"])
            procs.stop()

        # Registration and fan-out: ipcluster start -n N.
        reg = {}
        for n in q["reg_engines"]:
            with tempfile.TemporaryDirectory() as d:
                env = dict(os.environ, IPYTHONDIR=d)
                log(f"ipcluster start -n {n}")
                t = time.monotonic()
                r = subprocess.run([os.path.join(BIN, "ipcluster"), "start", "-n", str(n), "--daemonize"], env=env,
                                   capture_output=True, text=True, timeout=300)
                elapsed = time.monotonic() - t
                ok = r.returncode == 0
                fan = None
                if ok:
                    cf = os.path.join(d, "profile_default", "security", "ipcontroller-client.json")
                    fan = ipp_bench(cf, env, ["--tasks", "10", "--latency", "10", "--items", "10", "--fanout", "20"])["fanout"]
                subprocess.run([os.path.join(BIN, "ipcluster"), "stop"], env=env, capture_output=True, timeout=300)
                reg[str(n)] = {"seconds": elapsed, "ok": ok, "fanout_median_ms": fan["median_ms"] if fan else None}
        results["registration"] = reg

        # Controller memory per finished task record (DictDB keeping every record), and after purge.
        with tempfile.TemporaryDirectory() as d:
            log(f"controller memory over {q['mem_tasks']} tasks")
            env, cf, ctl = start_cluster(procs, d, "ours", "ours", 2,
                                         ["--hwm=0", f"--DictDB.record_limit={q['mem_tasks'] * 2}"])
            ipp_bench(cf, env, ["--tasks", "1000", "--latency", "10", "--items", "10"])
            before = rss_kib(ctl.pid)
            ipp_bench(cf, env, ["--tasks", str(q["mem_tasks"]), "--latency", "10", "--items", "10"])
            # The controller gives freed heap back every 5 s: read RSS after that, when what is
            # left is what the records (and the scheduler's memory of every task) hold.
            time.sleep(6)
            after = rss_kib(ctl.pid)
            subprocess.run([PY, "-c", "import ipyparallel as ipp,sys; ipp.Client(sys.argv[1]).purge_everything()", cf],
                           env=env, capture_output=True, timeout=120)
            time.sleep(6)
            purged = rss_kib(ctl.pid)
            results["memory"] = {"tasks": q["mem_tasks"], "bytes_per_record": (after - before) * 1024 / q["mem_tasks"],
                                 "rss_before_kib": before, "rss_after_kib": after, "rss_after_purge_kib": purged}
            procs.stop()
        # Imported here: each imports this module's helpers.
        import bench_engine, bench_lib, bench_prefetch, bench_scale
        results["engine"] = bench_engine.measure(procs, q)
        results["prefetch"] = bench_prefetch.measure(procs, q)
        results["lib"] = bench_lib.measure(procs, q)
        results["scale"] = bench_scale.measure(procs, q)
    finally:
        procs.stop()
    return results


def table(r):
    lines = [f"Measured {r['date']} on {r['machine']}" + (" (quick smoke run: not meaningful)" if r["quick"] else ""), "",
             "| measure | ours | stock ipyparallel 7.1 | ratio | target |", "|---|---|---|---|---|"]
    for n, row in r["python_stack"].items():
        lines.append(f"| LB throughput, Python client + {n} Python engines (tasks/s) | {row['ours']['lb_tasks_per_s']:.0f} | "
                     f"{row['stock']['lb_tasks_per_s']:.0f} | {row['throughput_ratio']:.2f}x | >= 3x |")
        lines.append(f"| direct RTT, Python client + Python engine, median (us) | {row['ours']['direct_rtt']['median_us']:.0f} | "
                     f"{row['stock']['direct_rtt']['median_us']:.0f} | "
                     f"{row['ours']['direct_rtt']['median_us'] / row['stock']['direct_rtt']['median_us']:.2f}x | |")
        cpu = [row[c].get("controller_cpu_us_per_request") for c in ("ours", "stock")]
        if all(cpu):
            lines.append(f"| controller CPU per request, Python client + {n} Python engines (us) | {cpu[0]:.0f} | "
                         f"{cpu[1]:.0f} | {cpu[0] / cpu[1]:.2f}x | <= 0.1x |")
    stock1 = next(iter(r["python_stack"].values()))["stock"]["lb_tasks_per_s"] if r["python_stack"] else None
    for n, b in r["cpp_stack"].items():
        ratio = f"{b['lb_tasks_per_s'] / stock1:.0f}x" if stock1 else ""
        lines.append(f"| LB throughput, C++ client + {n} C++ engines (tasks/s) | {b['lb_tasks_per_s']:.0f} | "
                     f"{stock1:.0f} (Python stack) | {ratio} | >= 50,000 |")
    if r.get("dashboard"):
        dash = r["dashboard"]
        lines.append(f"| LB throughput, C++ client + {dash['engines']} C++ engines, 10 dashboard SSE viewers vs none "
                     f"(tasks/s) | {dash['ten_viewers_tasks_per_s']:.0f} | {dash['no_viewer_tasks_per_s']:.0f} (no viewer) | "
                     f"{dash['ratio']:.2f}x | >= 0.95x |")
    last_n, last = list(r["cpp_stack"].items())[-1]
    lines.append(f"| chunked map, C++, {last_n} engines (items/s) | {last['map_items_per_s']:.0f} | | | >= 1,000,000 |")
    # The round trip goes to one engine, in every cluster size: idle engines' heartbeats load the
    # machine and so both numbers, which are timed in alternating blocks.
    # Our client uses ipc:// on the controller's host ("transport"); the floor is the raw echo over
    # TCP, with the raw echo over ipc:// beside it.
    for n, b in r["cpp_stack"].items():
        ipc = b.get("raw_zmq_rtt_ipc")
        lines.append(f"| direct RTT, C++ client + C++ engine ({n} in the cluster, over {b.get('transport', 'tcp')}), "
                     f"median / p99 (us) | {b['direct_rtt']['median_us']:.0f} / {b['direct_rtt']['p99_us']:.0f} | "
                     f"raw ZeroMQ, same hops in 3 processes: {b['raw_zmq_rtt']['median_us']:.0f} over TCP"
                     + (f", {ipc['median_us']:.0f} over ipc://" if ipc else "") +
                     f" (in 3 threads of one process: {b['raw_zmq_rtt_threads']['median_us']:.0f}) | "
                     f"{b['direct_rtt_ratio_to_raw']:.2f}x raw TCP"
                     + (f", {b['direct_rtt_ratio_to_raw_ipc']:.2f}x raw ipc" if ipc else "") + " | <= 1.3x raw |")
    for d in last.get("data", []):
        raw = d.get("raw_zmq_mb_per_s") or 0
        lines.append(f"| echo {d['mib']} MiB buffer to an engine and back (MB/s) | {d['roundtrip_mb_per_s']:.0f} | "
                     f"raw ZeroMQ, same hops: {raw:.0f}; memcpy {d['memcpy_mb_per_s']:.0f} | "
                     f"{(d['roundtrip_mb_per_s'] / raw if raw else 0):.2f}x raw | |")
    fp = r.get("from_python")
    if fp:
        lines.append(f"| from Python: sum + doubled copy of a 1 MiB numpy array, native function vs Python function "
                     f"on a stock engine, median (ms) | {fp['native_1mib_ms']:.2f} | {fp['python_1mib_ms']:.2f} | "
                     f"{fp['python_1mib_ms'] / fp['native_1mib_ms']:.2f}x faster | |")
        lines.append(f"| from Python: LB no-op tasks/s, native (ipp_native) vs Python on a stock engine, our controller | "
                     f"{fp['native_noop_tasks_per_s']:.0f} | {fp['python_noop_tasks_per_s']:.0f} | "
                     f"{fp['native_noop_tasks_per_s'] / fp['python_noop_tasks_per_s']:.2f}x | |")
    for n, g in r["registration"].items():
        fan = f"; apply-to-all {g['fanout_median_ms']:.1f} ms" if g["fanout_median_ms"] else ""
        lines.append(f"| ipcluster start -n {n}: all registered (s) | {g['seconds']:.2f}{fan} | | | < 10 s at 256 |")
    m = r["memory"]
    lines.append(f"| controller memory per finished task record (bytes) | {m['bytes_per_record']:.0f} | | | <= 512 |")
    lines.append(f"| controller RSS before / after {m['tasks']} tasks / after purge (KiB) | {m['rss_before_kib']} / "
                 f"{m['rss_after_kib']} / {m['rss_after_purge_kib']} | | | |")
    import bench_engine, bench_lib, bench_prefetch, bench_scale
    lines += bench_engine.rows(r["engine"])
    lines += bench_prefetch.rows(r["prefetch"])
    lines += bench_lib.rows(r.get("lib"))
    lines += bench_scale.rows(r["scale"])
    return "\n".join(lines) + "\n"


def plots(r, out):
    if not shutil.which("gnuplot"):
        log("gnuplot not found: no plots")
        return
    data = os.path.join(out, "throughput.dat")
    with open(data, "w") as f:
        for n, b in r["cpp_stack"].items():
            f.write(f"{n} {b['lb_tasks_per_s']}\n")
    pydata = os.path.join(out, "python_stack.dat")
    with open(pydata, "w") as f:
        for n, row in r["python_stack"].items():
            f.write(f"{n} {row['stock']['lb_tasks_per_s']} {row['ours']['lb_tasks_per_s']}\n")
    script = f'''
set terminal png size 800,500
set output "{os.path.join(out, 'throughput.png')}"
set title "Load-balanced no-op throughput"
set xlabel "engines"
set ylabel "tasks/s"
set logscale y
set key left top
plot "{data}" using 1:2 with linespoints title "C++ client + C++ engines, our controller", \\
     "{pydata}" using 1:3 with linespoints title "Python client + engines, our controller", \\
     "{pydata}" using 1:2 with linespoints title "Python client + engines, stock controller"
'''
    subprocess.run(["gnuplot"], input=script, text=True, check=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="CI smoke run with tiny sizes")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    a = ap.parse_args()
    if a.quick:
        q = dict(quick=True, py_engines=[1], py_tasks=50, py_rtts=20, cpp_engines=[1, 2], cpp_tasks=500, cpp_rtts=50,
                 map_items=2000, data_mib=[1], reg_engines=[4], mem_tasks=1000, native_py_tasks=100,
                 native_py_reps=3, dash_tasks=500, dash_reps=1,
                 engine_reps=1, engine_idle_s=1,
                 pf_engines=2, pf_tasks=500, pf_rounds=1, pf_mixed=100, pf_long=1, pf_long_s=0.1, pf_scale=[2, 4],
                 pf_scale_rounds=1, pf_burst=4, pf_burst_s=0.1,
                 lib_reps=1, lib_min_time=0.01,
                 scale_engines=[2, 4], scale_timeout=120, scale_idle_s=2, scale_reps=2)
    else:
        q = dict(quick=False, py_engines=[1, 2, 4, 8], py_tasks=2000, py_rtts=300, cpp_engines=[1, 2, 4, 8],
                 cpp_tasks=30000, cpp_rtts=2000, map_items=500000, data_mib=[1, 16, 64, 256],
                 reg_engines=[16, 64, 256], mem_tasks=100000, native_py_tasks=3000, native_py_reps=20,
                 dash_tasks=30000, dash_reps=6, engine_reps=8, engine_idle_s=5,
                 pf_engines=2, pf_tasks=30000, pf_rounds=4, pf_mixed=10000, pf_long=4, pf_long_s=1.0, pf_scale=[8, 256],
                 pf_scale_rounds=2, pf_burst=8, pf_burst_s=0.5,
                 lib_reps=9, lib_min_time=0.1,
                 scale_engines=[1024, 4096], scale_timeout=900, scale_idle_s=30, scale_reps=5)
    os.makedirs(a.out, exist_ok=True)
    r = measure(q)
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump(r, f, indent=2)
    md = table(r)
    with open(os.path.join(a.out, "results.md"), "w") as f:
        f.write(md)
    plots(r, a.out)
    print(md)


if __name__ == "__main__":
    main()
