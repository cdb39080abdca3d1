"""Ordinary Python work with requirements, a label or a priority: a stock LoadBalancedView whose
tasks also carry the task metadata "requires" (tags such as "gpu", resources such as "gpus>=2"),
"label" (kept in the task database, found by db_query) and "priority" (higher runs first among
tasks waiting for an engine), which our controller's scheduler and hub honour.

LoadBalancedView builds its task metadata inside _really_apply and hands it to
rc.send_apply_request. The view sets its extra metadata in a thread-local around that call, and
a wrapper installed once on the rc instance (it calls the stock method) adds it where the stock
view left a key unset: other views, threads and work on the same rc send exactly what they sent
before.
"""
import threading

from ipyparallel.client.view import LoadBalancedView
from traitlets import Any

from . import kinds as _kinds

_pending = threading.local()


def check_label_and_priority(label, priority):
    """Raises TypeError unless label is None or a str and priority a 32-bit int (what our
    scheduler accepts; it answers anything else with a ValueError)."""
    if label is not None and not isinstance(label, str):
        raise TypeError(f"label must be a str, not {type(label)}")
    if isinstance(priority, bool) or not isinstance(priority, int) or not -(2**31) <= priority < 2**31:
        raise TypeError(f"priority must be a 32-bit int, not {priority!r}")


def _install_hook(rc):
    if getattr(rc, "_ipp_native_metadata_hook", False):
        return
    stock_send = rc.send_apply_request

    def send_apply_request(*args, **kwargs):
        extra = getattr(_pending, "metadata", None)
        if extra:
            metadata = dict(kwargs.get("metadata") or {})
            for key, value in extra.items():
                if metadata.get(key) is None:
                    metadata[key] = value
            kwargs["metadata"] = metadata
        return stock_send(*args, **kwargs)

    rc.send_apply_request = send_apply_request
    rc._ipp_native_metadata_hook = True


class RequiringLoadBalancedView(LoadBalancedView):
    """A LoadBalancedView whose tasks need `requires` (a str or list of str), carry `label` (a
    str) and `priority` (an int, default 0); all three are also flags for set_flags /
    temp_flags."""

    requires = Any()
    label = Any()
    priority = Any(0)

    def __init__(self, client=None, socket=None, **flags):
        super().__init__(client=client, socket=socket, **flags)
        self._flag_names = list(self._flag_names) + [
            name for name in ("requires", "label", "priority") if name not in self._flag_names
        ]
        _install_hook(client)

    def set_flags(self, **kwargs):
        requires = kwargs.pop("requires", self.requires)
        if requires is not None and not isinstance(requires, (str, list, tuple)):
            raise TypeError(f"requires must be a str or a list of str, not {type(requires)}")
        label = kwargs.pop("label", self.label)
        priority = kwargs.pop("priority", self.priority)
        check_label_and_priority(label, priority)
        self.requires = list(requires) if isinstance(requires, tuple) else requires
        self.label = label
        self.priority = priority
        super().set_flags(**kwargs)

    def _really_apply(self, *args, **kwargs):
        extra = {}
        if self.requires:
            extra["requires"] = self.requires
        if self.label is not None:
            extra["label"] = self.label
        if self.priority:
            extra["priority"] = self.priority
        _pending.metadata = extra
        try:
            return super()._really_apply(*args, **kwargs)
        finally:
            _pending.metadata = None


def load_balanced_view(rc, targets=None, requires=None, label=None, priority=0, **flags):
    """rc.load_balanced_view(targets, **flags), with task requirements, a label and a priority.
    Requirements need our controller: against one that cannot route by tags this raises
    ValueError rather than let them be ignored. A label is stored by any 9.1 hub and ours; a
    priority is honoured by our controller only (others ignore it)."""
    if requires:
        engines, top = _kinds.queue_status(rc)
        if _kinds.controller_routes_by_kind(engines, top) is False:
            raise ValueError("requires needs our controller: this one cannot route tasks by tags")
    if targets is not None:
        targets = rc._build_targets(targets)[1]
    view = RequiringLoadBalancedView(client=rc, socket=rc._task_stream, targets=targets, **flags)
    view.set_flags(requires=requires, label=label, priority=priority)
    return view
