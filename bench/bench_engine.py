"""Lean engines: our ipengine vs the stock Python engine (ipyparallel 7.1), same controller
(ours), same run. Start to registered: from just before the engine's exec to its log line saying
it registered. Idle memory: after every engine has been idle (heartbeats only) for a while.
Engines start in ABBA order so that the load of those already running weighs on both kinds."""
import os
import statistics
import tempfile
import time

import run_bench  # its names are read when called: run_bench imports this module too


def kinds():
    """Each engine's argv and the log line that says it registered."""
    return {"ours": ([os.path.join(run_bench.BIN, "ipengine"), "--log-level=INFO"], b" registered (uuid "),
            "stock": ([run_bench.PY, "-m", "ipyparallel.engine", "--log-level=20"], b"Completed registration with id")}


def memory_kib(pid):
    """VmRSS, and from smaps_rollup the private (USS) and proportional (PSS) sizes."""
    out = {}
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            out["rss"] = int(line.split()[1])
    for line in open(f"/proc/{pid}/smaps_rollup"):
        parts = line.split()
        if parts[0] in ("Pss:", "Private_Clean:", "Private_Dirty:"):
            key = "pss" if parts[0] == "Pss:" else "uss"
            out[key] = out.get(key, 0) + int(parts[1])
    return out


def start_engine(procs, env, kind, logfile, timeout=60):
    """Starts one engine; returns (process, milliseconds from exec to its registration line)."""
    argv, line = kinds()[kind]
    t0 = time.perf_counter()
    p = procs.start(argv, env, logfile)
    end = t0 + timeout
    while time.perf_counter() < end:
        with open(logfile, "rb") as f:
            if line in f.read():
                return p, (time.perf_counter() - t0) * 1e3
        if p.poll() is not None:
            break
        time.sleep(0.0005)
    raise RuntimeError(f"{kind} engine did not register: see {logfile}")


def measure(procs, q):
    reps, idle_s = q["engine_reps"], q["engine_idle_s"]
    starts = {"ours": [], "stock": []}
    engines = {"ours": [], "stock": []}
    with tempfile.TemporaryDirectory() as d:
        run_bench.log(f"engine start and idle memory: ours vs stock, {reps} of each (ABBA)")
        env, _, _ = run_bench.start_cluster(procs, d, "ours", "ours", 0)
        for i in range(reps):
            for kind in (("ours", "stock") if i % 2 == 0 else ("stock", "ours")):
                p, ms = start_engine(procs, env, kind, os.path.join(d, f"{kind}-{i}.log"))
                starts[kind].append(ms)
                engines[kind].append(p)
        time.sleep(idle_s)  # idle: what an engine keeps, not what its start touched
        memory = {kind: [memory_kib(p.pid) for p in ps] for kind, ps in engines.items()}
        procs.stop()
    out = {"engines_each": reps, "idle_s": idle_s}
    for kind in starts:
        out[kind] = {"start_to_registered_ms": statistics.median(starts[kind]),
                     **{f"idle_{k}_kib": statistics.median(m[k] for m in memory[kind]) for k in ("rss", "pss", "uss")}}
    return out


def rows(r):
    ours, stock = r["ours"], r["stock"]
    n = r["engines_each"]

    def row(what, key, target, unit=""):
        return (f"| {what} ({n} of each, median{unit}) | {ours[key]:.0f} | {stock[key]:.0f} (stock Python engine) | "
                f"{ours[key] / stock[key]:.3f}x | {target} |")

    return [row("engine start to registered", "start_to_registered_ms", "<= 50 ms", ", ms"),
            row("idle engine RSS", "idle_rss_kib", "<= 4 MiB", ", KiB"),
            row("idle engine private memory (USS)", "idle_uss_kib", "", ", KiB"),
            row("idle engine proportional memory (PSS)", "idle_pss_kib", "", ", KiB")]


if __name__ == "__main__":  # this measurement alone: bench_engine.py [engines of each kind]
    import sys
    procs = run_bench.Procs()
    try:
        print("\n".join(rows(measure(procs, {"engine_reps": int(sys.argv[1]) if len(sys.argv) > 1 else 4,
                                             "engine_idle_s": 3}))))
    finally:
        procs.stop()
