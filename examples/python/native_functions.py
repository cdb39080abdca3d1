"""Native C++ functions from Python: the pi plugin and a numpy array through a native function,
with the stock ipyparallel Client, next to ordinary Python work on the same client.

    ipcluster start -n 2 --daemonize            # our native engines (our controller)
    /usr/bin/python3 -m ipyparallel.engine &     # optional: a stock Python engine too
    /usr/bin/python3 examples/python/native_functions.py --plugin build/lib/libipp_example_pi.so
"""
import argparse
import os

import ipyparallel as ipp
import numpy as np

from ipp_native import NativeView, engine_kinds

here = os.path.dirname(os.path.abspath(__file__))
ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--profile", default="default")
ap.add_argument("--file", help="the controller's ipcontroller-client.json (instead of --profile)")
ap.add_argument("--plugin", default=os.path.join(here, "..", "..", "build", "lib", "libipp_example_pi.so"))
a = ap.parse_args()

rc = ipp.Client(a.file) if a.file else ipp.Client(profile=a.profile)
rc.wait_for_engines(1, timeout=30)
kinds = engine_kinds(rc)
print("engines:", ", ".join(f"{eid} {kind}" for eid, kind in sorted(kinds.items())))

nv = NativeView(rc)                                      # load-balanced over the native engines
print("loaded:", nv.load(a.plugin))                     # on every native engine
print("pi.sample:", nv.functions()["pi.sample"])

# Monte Carlo pi: 8 tasks of a million samples, load-balanced.
counts = nv.map("pi.sample", [{"samples": 10**6, "seed": s} for s in range(8)]).get(60)
inside = sum(c["inside"] for c in counts)
print(f"pi is about {4 * inside / (8 * 10**6):.4f}")

# A numpy array travels as a buffer (uncopied); the buffer the function returns comes back as a
# numpy array because we ask for one (a memoryview otherwise).
a = np.linspace(0, 1, 1 << 17)                           # 1 MiB of float64
total, doubled = nv.apply("vec.sum_and_double", None, buffers=[a], dtype=np.float64).get(60)
print(f"sum {total:.1f} (numpy: {a.sum():.1f}); doubled[-1] = {doubled[-1]}")

# Failures come back as RemoteError, with the engine that raised.
try:
    nv.apply("fail.always").get(60)
except ipp.RemoteError as e:
    print(f"engine {e.engine_info['engine_id']} raised {e.ename}: {e.evalue}")

python_ids = [eid for eid, kind in kinds.items() if kind == "python"]
if python_ids:
    print("Python engines too:", rc[python_ids[0]].apply_sync(lambda: 6 * 7))
rc.close()
