"""Hot-path libraries against hand-written code, same run: bench/lib_bench.cpp (Google Benchmark)
compares protocol::JsonFields with simdjson On-Demand, and the hand-written open-addressing map
common/flat_hash_map.hpp had with absl::flat_hash_map (which it now wraps). CPU time medians of
interleaved repetitions; nothing if ipp_lib_bench was not built (Google Benchmark or simdjson
missing)."""
import json
import os
import subprocess

import run_bench

# (measure, ours, library): ratios are library time / our time (> 1: ours is faster).
PAIRS = [
    ("header + metadata fields of one task (5 parts), Python peers' text: JsonFields vs simdjson "
     "On-Demand (every field, as JsonFields gives them)", "BM_Json_Ours_JsonFields/1", "BM_Json_Simdjson_AllFields/1"),
    ("the same, our peers' compact text", "BM_Json_Ours_JsonFields/0", "BM_Json_Simdjson_AllFields/0"),
    ("the same, simdjson reading only the fields used, input already padded (not a drop-in)",
     "BM_Json_Ours_JsonFields/1", "BM_Json_Simdjson_FieldsReadOnly/1"),
    ("msg_id hash map, 10,000 tasks: hand-written vs absl::flat_hash_map",
     "BM_Map_Ours_FlatHashMap64/10000", "BM_Map_Absl_FlatHashMap/10000"),
    ("the same, 1,000,000 tasks", "BM_Map_Ours_FlatHashMap64/1000000", "BM_Map_Absl_FlatHashMap/1000000"),
]


def measure(procs, q):
    exe = os.path.join(run_bench.BIN, "ipp_lib_bench")
    if not os.path.exists(exe):
        run_bench.log("ipp_lib_bench not built: no library comparison")
        return {}
    run_bench.log("hot-path libraries (ipp_lib_bench)")
    r = subprocess.run([exe, "--benchmark_format=json", f"--benchmark_repetitions={q['lib_reps']}",
                        "--benchmark_enable_random_interleaving=true", "--benchmark_report_aggregates_only=true",
                        f"--benchmark_min_time={q['lib_min_time']}"], capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-2000:])
    out = {"median_cpu_ns": {}, "bytes_per_key": {}}
    for b in json.loads(r.stdout)["benchmarks"]:
        if b.get("aggregate_name") != "median":
            continue
        out["median_cpu_ns"][b["run_name"]] = b["cpu_time"]
        if "bytes_per_key" in b:
            out["bytes_per_key"][b["run_name"]] = b["bytes_per_key"]
    return out


def rows(result):
    if not result:
        return []
    ns = result["median_cpu_ns"]
    lines = []
    for what, ours, lib in PAIRS:
        if ours in ns and lib in ns:
            lines.append(f"| {what} (CPU ns) | {ns[ours]:.0f} | {ns[lib]:.0f} | {ns[lib] / ns[ours]:.2f}x | |")
    per_key = result["bytes_per_key"]
    ours = next((v for k, v in per_key.items() if k.startswith("BM_Map_Ours")), None)
    absl = next((v for k, v in per_key.items() if k.startswith("BM_Map_Absl")), None)
    if ours and absl:
        lines.append(f"| msg_id hash map memory, 100,000 tasks (bytes per key): hand-written vs absl | {ours:.0f} | "
                     f"{absl:.0f} | {absl / ours:.2f}x | |")
    return lines
