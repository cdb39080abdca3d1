"""One client of test_mixed_cluster_two_clients_ten_thousand_tasks: sends N interleaved Python
and native load-balanced tasks (every 10th native one requires tag gpu) through one stock Client,
checks each answer and which kind of engine ran it, and prints a JSON summary. Any failure raises.
Usage: ipp_native_mixed_client.py CLIENT_JSON FIRST_ITEM N"""
import json
import sys

import ipyparallel as ipp

from ipp_native import NativeView, engine_kinds


def tagged(x):
    return ["py", x * 3]


client_file, first, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rc = ipp.Client(client_file, timeout=30)
rc.wait_for_engines(4, timeout=30)
kinds = engine_kinds(rc)
python_ids = {e for e, k in kinds.items() if k == "python"}
native_ids = {e for e, k in kinds.items() if k == "native"}
gpu_ids = {e for e, s in rc.queue_status().items() if isinstance(s, dict) and "gpu" in s.get("tags", [])}
assert len(python_ids) == 2 and len(native_ids) == 2 and len(gpu_ids) == 1, (kinds, gpu_ids)
lv = rc.load_balanced_view()
nv = NativeView(rc)

sent = []
for i in range(first, first + n):
    if i % 2:
        sent.append(("python", i, lv.apply_async(tagged, i)))
    elif i % 20 == 0:
        sent.append(("gpu", i, nv.apply("ipp.echo", {"i": i}, requires="gpu")))
    else:
        sent.append(("native", i, nv.apply("ipp.echo", {"i": i})))

counts = {"python": 0, "native": 0, "gpu": 0}
for kind, i, ar in sent:
    result = ar.get(300)
    if kind == "python":
        assert result == ["py", i * 3], (i, result)
        assert ar.engine_id in python_ids, (i, ar.engine_id)
        counts["python"] += 1
    else:
        assert result == {"i": i}, (i, result)
        assert ar.engine_id in (gpu_ids if kind == "gpu" else native_ids), (kind, i, ar.engine_id)
        counts["native"] += 1
        counts["gpu"] += kind == "gpu"
assert rc._io_thread.is_alive()
rc.close()
print(json.dumps(counts))
