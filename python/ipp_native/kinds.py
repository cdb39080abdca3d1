"""Which engines of a cluster are native (our C++ ipengine) and which run Python, as seen
through a stock ipyparallel Client.

Our controller says it in queue_status (each engine's "kind"); the stock controller does not,
and then each engine is asked for its kernel_info on the control channel (every kernel answers
it; ours names its language "c++").
"""

NATIVE = "native"
PYTHON = "python"


def _is_engine_id(key):
    return isinstance(key, int) or (isinstance(key, str) and key.isdigit())


def queue_status(rc):
    """The hub's queue_status as {engine id: dict}, plus its top-level keys (e.g. "waiting")."""
    status = rc.queue_status(verbose=False)
    engines = {int(k): v for k, v in status.items() if _is_engine_id(k) and isinstance(v, dict)}
    top = {k: v for k, v in status.items() if not _is_engine_id(k)}
    return engines, top


def controller_routes_by_kind(engines, top):
    """True when the controller is ours (it routes load-balanced work by what an engine can run),
    False when it is not, None when it cannot be told (no engine connected, nothing waiting)."""
    if engines:
        return all("kind" in e for e in engines.values())
    return True if "waiting" in top else None


def kernel_kinds(rc, engine_ids, timeout=10):
    """{engine id: kind} from each engine's kernel_info_reply (sent through rc's control socket
    and bookkeeping, so rc's I/O thread handles the replies as its own)."""
    futures = {}
    for eid in engine_ids:
        uuid = rc._engines.get(eid)
        if uuid is None:
            continue
        futures[eid] = rc._send(rc._control_stream, "kernel_info_request", content={}, ident=uuid.encode())
    kinds = {}
    for eid, future in futures.items():
        reply = future.result(timeout=timeout)
        language = reply["content"].get("language_info", {}).get("name", "")
        kinds[eid] = NATIVE if language == "c++" else PYTHON
    return kinds


def engine_kinds(rc, timeout=10):
    """{engine id: "native" | "python"} for every engine the hub and rc both know."""
    engines, _ = queue_status(rc)
    known = set(rc.ids)
    kinds = {eid: e["kind"] for eid, e in engines.items() if "kind" in e and eid in known}
    missing = [eid for eid in engines if eid not in kinds and eid in known]
    if missing:
        kinds.update(kernel_kinds(rc, missing, timeout))
    return kinds
