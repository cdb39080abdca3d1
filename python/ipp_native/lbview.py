"""Ordinary Python work with requirements: a stock LoadBalancedView whose tasks also carry the
task metadata "requires" (tags such as "gpu", resources such as "gpus>=2"), which our
controller's scheduler honours.

LoadBalancedView builds its task metadata inside _really_apply and hands it to
rc.send_apply_request. The view sets its requirements in a thread-local around that call, and a
wrapper installed once on the rc instance (it calls the stock method) adds them: other views,
threads and work on the same rc send exactly what they sent before.
"""
import threading

from ipyparallel.client.view import LoadBalancedView
from traitlets import Any

from . import kinds as _kinds

_pending = threading.local()


def _install_hook(rc):
    if getattr(rc, "_ipp_native_requires_hook", False):
        return
    stock_send = rc.send_apply_request

    def send_apply_request(*args, **kwargs):
        requires = getattr(_pending, "requires", None)
        if requires:
            metadata = dict(kwargs.get("metadata") or {})
            metadata["requires"] = requires
            kwargs["metadata"] = metadata
        return stock_send(*args, **kwargs)

    rc.send_apply_request = send_apply_request
    rc._ipp_native_requires_hook = True


class RequiringLoadBalancedView(LoadBalancedView):
    """A LoadBalancedView whose tasks need `requires` (a str or list of str; also a flag for
    set_flags / temp_flags)."""

    requires = Any()

    def __init__(self, client=None, socket=None, **flags):
        super().__init__(client=client, socket=socket, **flags)
        self._flag_names = list(self._flag_names) + ["requires"]
        _install_hook(client)

    def set_flags(self, **kwargs):
        requires = kwargs.pop("requires", self.requires)
        if requires is not None and not isinstance(requires, (str, list, tuple)):
            raise TypeError(f"requires must be a str or a list of str, not {type(requires)}")
        self.requires = list(requires) if isinstance(requires, tuple) else requires
        super().set_flags(**kwargs)

    def _really_apply(self, *args, **kwargs):
        _pending.requires = self.requires
        try:
            return super()._really_apply(*args, **kwargs)
        finally:
            _pending.requires = None


def load_balanced_view(rc, targets=None, requires=None, **flags):
    """rc.load_balanced_view(targets, **flags), with task requirements. Requirements need our
    controller: against one that cannot route by tags this raises ValueError rather than let
    them be ignored."""
    if requires:
        engines, top = _kinds.queue_status(rc)
        if _kinds.controller_routes_by_kind(engines, top) is False:
            raise ValueError("requires needs our controller: this one cannot route tasks by tags")
    if targets is not None:
        targets = rc._build_targets(targets)[1]
    view = RequiringLoadBalancedView(client=rc, socket=rc._task_stream, targets=targets, **flags)
    view.set_flags(requires=requires)
    return view
