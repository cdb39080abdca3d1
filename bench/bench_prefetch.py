"""Adaptive prefetch (issue 21): the scheduler's default against --hwm=0 and --hwm=1.

(a) load-balanced no-op tasks, C++ client and engines: defaults vs --hwm=0 vs --hwm=1;
(b) a mixed workload on 4 engines (1 ms tasks with a few 1 s ones among them): makespan with
    the defaults vs --hwm=1;
(c) load-balanced no-op throughput with many engines vs few, defaults;
(d) a burst of long tasks right after many no-op ones on 4 engines (work stealing): makespan with
    the defaults vs --hwm=1.
Every comparison restarts the cluster for each side, alternating the order (ABBA...) within one
run; medians. Only ratios mean anything on a shared machine.
"""
import statistics
import tempfile

from run_bench import ipp_bench, log, start_cluster

MODES = {"defaults": [], "hwm0": ["--hwm=0"], "hwm1": ["--hwm=1"]}


def alternate(procs, rounds, sides, run):
    """run(side) for each side in `sides`, order reversed every other round; lists per side."""
    got = {side: [] for side in sides}
    for r in range(rounds):
        for side in (sides if r % 2 == 0 else sides[::-1]):
            with tempfile.TemporaryDirectory() as d:
                try:
                    got[side].append(run(d, side))
                finally:
                    procs.stop()
    return got


def measure(procs, q):
    return {"noop": measure_noop(procs, q), "mixed": measure_mixed(procs, q), "scale": measure_scale(procs, q),
            "burst": measure_burst(procs, q)}


def measure_noop(procs, q):
    def noop(d, mode):
        log(f"prefetch: no-op LB tasks, {q['pf_engines']} engines, {mode}")
        env, cf, _ = start_cluster(procs, d, "ours", "ours", q["pf_engines"], MODES[mode])
        return ipp_bench(cf, env, ["--lb-only", "--tasks", str(q["pf_tasks"])])["lb_tasks_per_s"]

    got = alternate(procs, q["pf_rounds"], list(MODES), noop)
    return {**{mode: statistics.median(v) for mode, v in got.items()}, "engines": q["pf_engines"]}


def measure_mixed(procs, q):
    def mixed(d, mode):
        log(f"prefetch: mixed workload, 4 engines, {mode}")
        env, cf, _ = start_cluster(procs, d, "ours", "ours", 4, MODES[mode])
        args = ["--mixed", str(q["pf_mixed"]), "--long", str(q["pf_long"]), "--long-s", str(q["pf_long_s"])]
        return ipp_bench(cf, env, args)["mixed"]["makespan_s"]

    got = alternate(procs, q["pf_rounds"], ["defaults", "hwm1"], mixed)
    return {**{mode: statistics.median(v) for mode, v in got.items()},
            "short": q["pf_mixed"], "long": q["pf_long"], "long_s": q["pf_long_s"]}


def measure_burst(procs, q):
    def burst(d, mode):
        log(f"prefetch: a burst of long tasks after no-op ones, 4 engines, {mode}")
        env, cf, _ = start_cluster(procs, d, "ours", "ours", 4, MODES[mode])
        return ipp_bench(cf, env, ["--burst", str(q["pf_burst"]), "--long-s", str(q["pf_burst_s"])])["burst"]["makespan_s"]

    got = alternate(procs, q["pf_rounds"], ["defaults", "hwm1"], burst)
    return {**{mode: statistics.median(v) for mode, v in got.items()}, "tasks": q["pf_burst"], "long_s": q["pf_burst_s"]}


def measure_scale(procs, q):
    few, many = q["pf_scale"]

    def scale(d, n):
        log(f"prefetch: no-op LB tasks, {n} engines, defaults")
        env, cf, _ = start_cluster(procs, d, "ours", "ours", n)
        return ipp_bench(cf, env, ["--lb-only", "--tasks", str(q["pf_tasks"])])["lb_tasks_per_s"]

    got = alternate(procs, q["pf_scale_rounds"], [few, many], scale)
    return {"few": few, "many": many, "few_tasks_per_s": statistics.median(got[few]),
            "many_tasks_per_s": statistics.median(got[many])}


def rows(r):
    n, m, s, b = r["noop"], r["mixed"], r["scale"], r["burst"]
    return [
        f"| LB no-op tasks/s, C++ client + {n['engines']} C++ engines, defaults vs --hwm=0 | {n['defaults']:.0f} | "
        f"{n['hwm0']:.0f} | {n['defaults'] / n['hwm0']:.2f}x | >= 0.8x |",
        f"| LB no-op tasks/s, C++ client + {n['engines']} C++ engines, defaults vs --hwm=1 | {n['defaults']:.0f} | "
        f"{n['hwm1']:.0f} | {n['defaults'] / n['hwm1']:.2f}x | |",
        f"| mixed workload makespan, 4 engines, {m['short']} x 1 ms + {m['long']} x {m['long_s']:g} s, defaults vs "
        f"--hwm=1 (s) | {m['defaults']:.2f} | {m['hwm1']:.2f} | {m['defaults'] / m['hwm1']:.2f}x | <= 1.1x |",
        f"| LB no-op tasks/s, defaults, {s['many']} engines vs {s['few']} | {s['many_tasks_per_s']:.0f} | "
        f"{s['few_tasks_per_s']:.0f} | {s['many_tasks_per_s'] / s['few_tasks_per_s']:.2f}x | >= 0.8x |",
        f"| burst makespan, 4 engines, {b['tasks']} x {b['long_s']:g} s right after 2,000 no-op tasks, defaults vs "
        f"--hwm=1 (s) | {b['defaults']:.2f} | {b['hwm1']:.2f} | {b['defaults'] / b['hwm1']:.2f}x | <= 1.1x |",
    ]
