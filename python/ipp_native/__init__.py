"""Native C++ functions of ipp engines from Python, through the stock ipyparallel Client.

    import ipyparallel as ipp, numpy as np
    from ipp_native import NativeView
    rc = ipp.Client(profile="default")
    nv = NativeView(rc)                       # load-balanced over native engines
    nv.load("/path/libmyfuncs.so")            # on every native engine
    nv.apply("pi.sample", {"samples": 10**6}).get(30)
    nv.apply("vec.sum_and_double", None, buffers=[np.arange(8.0)], dtype="float64").get(30)

and Python work with requirements: ipp_native.load_balanced_view(rc, requires=["gpu"]).
"""
from .kinds import engine_kinds
from .lbview import RequiringLoadBalancedView, load_balanced_view
from .view import NativeAsyncResult, NativeView

__all__ = ["NativeView", "NativeAsyncResult", "load_balanced_view", "RequiringLoadBalancedView", "engine_kinds"]
