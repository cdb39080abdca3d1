"""NativeView: native C++ functions of ipp engines, called through a stock ipyparallel Client.

Every request goes out through the Client's own sockets, session and bookkeeping (rc._send with
track_outstanding, as Client.send_apply_request does), so the Client's I/O thread handles each
reply as one of its own: rc keeps serving ordinary Python work in the same session. The reply's
first buffer is a pickle the stock client unpickles (protocol/PROTOCOL.md): the function's JSON
result, or the tuple (result, bytes, ...) when the function added buffers.

Threads: a NativeView is used from the caller's threads like a stock view; replies are handled
on rc's I/O thread, which resolves the returned AsyncResults.
"""
import json
import math
import os
import time

from ipyparallel import error
from ipyparallel.client.asyncresult import AsyncResult

from . import kinds as _kinds
from .lbview import check_label_and_priority

_TASK_OPTIONS = ("retries", "timeout", "after", "follow", "requires", "label", "priority")


class NativeAsyncResult(AsyncResult):
    """An AsyncResult (get(timeout), wait, ready, successful, metadata...) whose results carry
    the function's buffers as memoryviews, or as 1-D numpy arrays of `dtype` when one was given.
    A result with buffers is the tuple (result, buffer, ...); a map's result is the flat list."""

    def __init__(self, client, children, fname, targets=None, dtype=None, chunks=None):
        self._dtype = dtype
        # For a map: per child, True when it is an ipp.map chunk (its result is a list).
        self._chunks = chunks
        super().__init__(client, children, fname=fname, targets=targets, owner=True)

    def _buffer(self, data):
        view = memoryview(data)
        if self._dtype is None:
            return view
        import numpy
        return numpy.frombuffer(view, dtype=self._dtype)

    def _convert(self, result):
        if isinstance(result, tuple):
            return (result[0],) + tuple(self._buffer(b) for b in result[1:])
        return result

    def _reconstruct_result(self, res):
        if self._chunks is not None:
            flat = []
            for chunked, r in zip(self._chunks, res):
                if chunked:
                    flat.extend(self._convert(x) for x in r)
                else:
                    flat.append(self._convert(r))
            return flat
        if self._single_result:
            return self._convert(res[0])
        return [self._convert(r) for r in res]


def _as_buffer(obj):
    """A contiguous byte view of obj (bytes, bytearray, memoryview, numpy array...), uncopied
    when it is already contiguous."""
    view = memoryview(obj)
    if not view.c_contiguous:
        return view.tobytes()
    return view.cast("B") if view.ndim != 1 or view.format != "B" else view


def _check_json(function, args):
    """Fail in the caller's thread, not in rc's I/O thread (which packs the message)."""
    if not isinstance(function, str) or not function:
        raise TypeError(f"function must be a non-empty str, not {function!r}")
    try:
        json.dumps(args, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise TypeError(f"args for {function} must be JSON (no NaN/inf): {e}") from None


class NativeView:
    """Native functions on our engines, from a stock ipyparallel Client `rc`.

    targets=None: load-balanced through rc's task scheduler. Our controller sends `ipp_call`
    work only to native engines that have the function (and meet `requires`); against the stock
    controller, which cannot route by kind, the tasks are restricted (metadata "targets") to the
    native engines connected when they are sent.
    targets=<int or list of ints>: direct (MUX) to those engines; apply runs on each of them.

    Task options (view defaults here, overridable per call): retries, timeout, after, follow
    (msg ids, AsyncResults or a Dependency, as on LoadBalancedView), requires (a tag or
    list of requirements such as "gpu" or "gpus>=2"), label (a str kept in the task database,
    found by db_query), priority (an int, default 0: among tasks waiting for an engine, a higher
    one runs first; our controller only). They apply to load-balanced work only.
    """

    def __init__(self, rc, targets=None, *, retries=0, timeout=None, after=None, follow=None, requires=None,
                 label=None, priority=0):
        self.client = rc
        self.targets = targets
        self.retries = retries
        self.timeout = timeout
        self.after = after
        self.follow = follow
        self.requires = requires
        self.label = label
        self.priority = priority
        # The stock view renders and validates dependencies; it sends nothing by itself.
        self._lbview = rc.load_balanced_view()
        self._routing = None  # (rc.ids when decided, routes_by_kind, native ids)

    def __repr__(self):
        where = "load-balanced" if self.targets is None else f"targets={self.targets}"
        return f"<NativeView {where}>"

    # ----- which engines -------------------------------------------------------------------

    def _decide_routing(self):
        """(routes_by_kind, native engine ids, python engine ids), cached until rc's engines
        change."""
        ids = tuple(self.client.ids)
        if self._routing and self._routing[0] == ids:
            return self._routing[1:]
        engines, top = _kinds.queue_status(self.client)
        routes = _kinds.controller_routes_by_kind(engines, top)
        kinds = {eid: e["kind"] for eid, e in engines.items() if "kind" in e}
        missing = [eid for eid in engines if eid not in kinds and eid in ids]
        if missing:
            kinds.update(_kinds.kernel_kinds(self.client, missing))
        natives = sorted(eid for eid, k in kinds.items() if k == _kinds.NATIVE and eid in ids)
        pythons = sorted(eid for eid, k in kinds.items() if k == _kinds.PYTHON and eid in ids)
        if routes is not None:  # unknown (no engine yet): decide again next time
            self._routing = (ids, routes, natives, pythons)
        return routes, natives, pythons

    def engines(self):
        """The ids of the native engines this view reaches now."""
        if self.targets is not None:
            return self._target_ids()
        return self._decide_routing()[1]

    def _target_ids(self):
        """The direct targets; a Python engine among them is refused before anything is sent
        (it cannot unpack a native call)."""
        ids = [self.targets] if isinstance(self.targets, int) else list(self.targets)
        pythons = set(self._decide_routing()[2]).intersection(ids)
        if pythons:
            raise ValueError(f"engine(s) {sorted(pythons)} run Python, not native functions")
        return ids

    def _uuid(self, eid):
        try:
            return self.client._engines[eid]
        except KeyError:
            raise error.NoEnginesRegistered(f"engine {eid} is not registered") from None

    # ----- sending -------------------------------------------------------------------------

    def _send(self, socket, function, args, buffers=None, ident=None, metadata=None):
        content = {"ipp_call": {"function": function, "args": args}}
        return self.client._send(socket, "apply_request", content=content,
                                 ident=ident.encode() if ident else None,
                                 buffers=[_as_buffer(b) for b in buffers or ()],
                                 metadata=metadata or {}, track_outstanding=True)

    def _task_metadata(self, options):
        unknown = set(options) - set(_TASK_OPTIONS)
        if unknown:
            raise TypeError(f"unknown task options: {sorted(unknown)} (known: {', '.join(_TASK_OPTIONS)})")
        o = {name: options.get(name, getattr(self, name)) for name in _TASK_OPTIONS}
        if not isinstance(o["retries"], int):
            raise TypeError(f"retries must be int, not {type(o['retries'])}")
        if o["timeout"] is not None and (not isinstance(o["timeout"], (int, float)) or o["timeout"] < 0):
            raise ValueError(f"invalid timeout: {o['timeout']!r}")
        check_label_and_priority(o["label"], o["priority"])
        for name in ("after", "follow"):
            if not self._lbview._validate_dependency(o[name]):
                raise ValueError(f"invalid dependency for {name}: {o[name]!r}")
        routes, natives, _ = self._decide_routing()
        md = {"after": self._lbview._render_dependency(o["after"]),
              "follow": self._lbview._render_dependency(o["follow"]),
              "timeout": o["timeout"], "retries": o["retries"], "targets": []}
        if o["label"] is not None:
            md["label"] = o["label"]
        if o["priority"]:
            md["priority"] = o["priority"]
        if o["requires"]:
            if routes is False:
                raise ValueError("requires needs our controller: this one cannot route tasks by tags")
            md["requires"] = o["requires"]
        if routes is False:
            if not natives:
                raise error.NoEnginesRegistered(
                    "no native engine is connected (and this controller cannot hold native work for one)")
            md["targets"] = [self._uuid(eid) for eid in natives]
        return md

    def _direct_only(self, options):
        given = sorted(k for k, v in options.items() if v not in (None, 0, []))
        if given:
            raise TypeError(f"task options {given} are for a load-balanced NativeView (targets=None)")

    def apply(self, function, args=None, buffers=None, *, dtype=None, **options):
        """Calls `function` with JSON `args` and binary `buffers` (bytes, memoryviews, numpy
        arrays: sent uncopied). Returns a NativeAsyncResult: the result, a list of them for a
        direct view with a list of targets; a failure raises ipyparallel.error.RemoteError."""
        _check_json(function, args)
        if self.targets is None:
            md = self._task_metadata(options)
            future = self._send(self.client._task_stream, function, args, buffers, metadata=md)
            return NativeAsyncResult(self.client, future, function, dtype=dtype)
        self._direct_only(options)
        futures = [self._send(self.client._mux_stream, function, args, buffers, ident=self._uuid(eid))
                   for eid in self._target_ids()]
        if isinstance(self.targets, int):
            futures = futures[0]
        return NativeAsyncResult(self.client, futures, function, targets=self.targets, dtype=dtype)

    def map(self, function, iterable, chunksize=None, *, dtype=None, **options):
        """function(item) for each item (JSON values), in order. Load-balanced: one task per
        `chunksize` items (default 1). Direct: the items are split into one chunk per target
        unless `chunksize` is given, chunks dealt to the targets in turn. Returns a
        NativeAsyncResult whose result is the list of results."""
        _check_json(function, None)
        items = list(iterable)
        _check_json(function, items)
        if self.targets is None:
            chunksize = chunksize or 1
            md = self._task_metadata(options)
        else:
            self._direct_only(options)
            targets = self._target_ids()
            chunksize = chunksize or max(1, math.ceil(len(items) / len(targets)))
        if chunksize < 1:
            raise ValueError(f"chunksize must be >= 1, not {chunksize}")
        futures, chunked = [], []
        for n, start in enumerate(range(0, len(items), chunksize)):
            part = items[start:start + chunksize]
            if len(part) == 1 and self.targets is None:
                call, args = function, part[0]
            else:
                call, args = "ipp.map", {"function": function, "items": part}
            if self.targets is None:
                futures.append(self._send(self.client._task_stream, call, args, metadata=md))
            else:
                ident = self._uuid(targets[n % len(targets)])
                futures.append(self._send(self.client._mux_stream, call, args, ident=ident))
            chunked.append(call == "ipp.map")
        if not futures:
            return _Done([])
        return NativeAsyncResult(self.client, futures, function, dtype=dtype, chunks=chunked)

    # ----- built-ins on every engine of the view -------------------------------------------

    def _on_each(self, function, args, timeout):
        """{engine id: result} of a built-in called directly on each native engine of the view."""
        ids = self.engines()
        if not ids:
            raise error.NoEnginesRegistered("no native engine is connected")
        return self._call_each(ids, function, args, timeout)

    def _call_each(self, ids, function, args, timeout):
        """{engine id: result} of `function` called directly on each engine of `ids`; the first
        remote error raises."""
        futures = {eid: self._send(self.client._mux_stream, function, args, ident=self._uuid(eid)) for eid in ids}
        results = {}
        for eid, future in futures.items():
            r = future.result(timeout=timeout)
            if isinstance(r, error.RemoteError):
                raise r
            results[eid] = r
        return results

    def load(self, path, timeout=60, keep=None):
        """Loads a plugin (a shared library) on every native engine of the view (ipp.load).
        Returns {engine id: [names of the functions it added]}.

        keep: also have every native engine that registers later load it (started, or restarted
        by ipcluster), as `ipp load` does; our controller keeps the list. Default: for a
        load-balanced view (every engine) when the controller is ours. keep=True with the stock
        controller, which keeps no such list, raises ValueError before anything is loaded."""
        path = os.path.normpath(os.path.abspath(path))
        routes_by_kind = self._decide_routing()[0]
        if keep and routes_by_kind is False:
            raise ValueError("keep=True needs our controller: the stock one keeps no plugins for engines that register later")
        if keep is None:
            keep = self.targets is None and routes_by_kind is True
        loaded = self._on_each("ipp.load", {"path": path}, timeout)
        if keep:
            loaded.update(self._keep_for_later(path, loaded, timeout))
        return loaded

    def _keep_for_later(self, path, loaded, timeout):
        """Has the hub keep `path`, and loads it into the native engines whose registration
        reply went out before (those not in `loaded`); {engine id: names} of those."""
        reply = self.client._send_recv(self.client._query_stream, "ipp_plugins_request", content={"add": path})
        content = reply["content"]
        if content.get("status") != "ok":
            raise ValueError(f"the controller did not keep {path}: {content.get('evalue', content)}")
        late = [eid for eid in content.get("registered_before", []) if eid not in loaded]
        # Some may still be registering: the client hears of them within a heartbeat or two.
        deadline = time.monotonic() + 10
        while any(eid not in self.client.ids for eid in late) and time.monotonic() < deadline:
            time.sleep(0.05)
        return self._call_each([eid for eid in late if eid in self.client.ids], "ipp.load", {"path": path}, timeout)

    def functions(self, timeout=30):
        """{name: doc} of the functions the view's native engines have (ipp.functions)."""
        names = {}
        for table in self._on_each("ipp.functions", None, timeout).values():
            for entry in table:
                names.setdefault(entry["name"], entry.get("doc", ""))
        return dict(sorted(names.items()))


class _Done:
    """The result of mapping over no items: ready at once."""

    def __init__(self, value):
        self._value = value

    def get(self, timeout=None):
        return self._value

    def wait(self, timeout=None):
        return True

    def ready(self):
        return True

    def successful(self):
        return True
