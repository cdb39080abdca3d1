"""Fixtures that start our ipcontroller and stock ipyparallel engines as real processes.

Runs under /usr/bin/python3 (Debian's ipyparallel 7.1). IPP_BIN_DIR names our build's bin/.
IPP_COMPAT_IPYPARALLEL names the folder of another ipyparallel (e.g. the 9.1 copy) whose client,
engines and ipp.Cluster the tests then use instead; where it is absent, every test is skipped.
"""
import atexit
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import pytest
import zmq

BIN_DIR = os.environ.get("IPP_BIN_DIR") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build", "bin"
)
IPCONTROLLER = os.path.join(BIN_DIR, "ipcontroller")
IPENGINE = os.path.join(BIN_DIR, "ipengine")
LIB_DIR = os.path.join(BIN_DIR, "..", "lib")
STOCK_CONTROLLER = [sys.executable, "-m", "ipyparallel.controller"]
TESTS_DIR = os.path.dirname(os.path.abspath(__file__))

OTHER_IPYPARALLEL = os.environ.get("IPP_COMPAT_IPYPARALLEL", "")
OTHER_IPYPARALLEL_ABSENT = bool(OTHER_IPYPARALLEL) and not os.path.isdir(
    os.path.join(OTHER_IPYPARALLEL, "ipyparallel"))
if OTHER_IPYPARALLEL and not OTHER_IPYPARALLEL_ABSENT:
    # Before any test module imports ipyparallel; the PYTHONPATH is for the processes we start
    # and those ipp.Cluster starts.
    sys.path.insert(0, OTHER_IPYPARALLEL)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [OTHER_IPYPARALLEL, os.environ.get("PYTHONPATH")]))


def pytest_report_header(config):
    if OTHER_IPYPARALLEL_ABSENT:
        return f"ipyparallel: {OTHER_IPYPARALLEL} is absent, all tests skipped"
    import ipyparallel
    return f"ipyparallel {ipyparallel.__version__} from {os.path.dirname(ipyparallel.__file__)}"


def pytest_collection_modifyitems(config, items):
    if OTHER_IPYPARALLEL_ABSENT:
        skip = pytest.mark.skip(reason=f"IPP_COMPAT_IPYPARALLEL={OTHER_IPYPARALLEL} is absent")
        for item in items:
            item.add_marker(skip)


def ipyparallel_at_least(*version):
    import ipyparallel
    return ipyparallel.version_info[:len(version)] >= version


# Every process group we start, so that nothing outlives the test run even when pytest is
# interrupted or killed by ctest's timeout (SIGTERM).
_started_groups = set()


def _kill_all_started():
    for pgid in list(_started_groups):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _started_groups.clear()


atexit.register(_kill_all_started)


def _on_sigterm(signum, frame):
    _kill_all_started()
    raise SystemExit(128 + signum)


signal.signal(signal.SIGTERM, _on_sigterm)


def _die_with_parent():
    """In the child: SIGKILL when pytest dies, even by SIGKILL (no atexit then)."""
    import ctypes
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def wait_for(condition, timeout=30, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


class Cluster:
    """Our controller plus stock engines in a private profile dir; stops all it started."""

    def __init__(self, workdir, controller_args=(), cluster_id="", stock_controller=False):
        self.stock_controller = stock_controller
        self.workdir = workdir
        self.profile_dir = os.path.join(workdir, "profile_test")
        os.makedirs(self.profile_dir, exist_ok=True)
        self.controller_args = list(controller_args)
        self.cluster_id = cluster_id
        self.controller = None
        self.engines = []
        self.clients = []
        self._natives = []
        self._logs = []

    @property
    def security_dir(self):
        return os.path.join(self.profile_dir, "security")

    def connection_file(self, role="client"):
        name = f"ipcontroller-{self.cluster_id}-{role}.json" if self.cluster_id else f"ipcontroller-{role}.json"
        return os.path.join(self.security_dir, name)

    def _popen(self, argv, log_name):
        log = open(os.path.join(self.workdir, log_name), "ab")
        self._logs.append(log)
        # Engines unpickle functions defined in the test modules: let them import those.
        env = dict(os.environ, IPYTHONDIR=self.workdir,
                   PYTHONPATH=os.pathsep.join(filter(None, [TESTS_DIR, os.environ.get("PYTHONPATH")])))
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True, cwd=self.workdir, preexec_fn=_die_with_parent)
        _started_groups.add(proc.pid)
        return proc

    def start_controller(self, extra=()):
        cf = self.connection_file("client")
        if os.path.exists(cf) and "--reuse" not in extra and "--restore" not in extra:
            os.remove(cf)
        if self.stock_controller:
            argv = STOCK_CONTROLLER + [f"--profile-dir={self.profile_dir}", "--ping=300", "--log-level=10"]
        else:
            argv = [IPCONTROLLER, f"--profile-dir={self.profile_dir}", "--ping=300", "--log-level=DEBUG"]
        if self.cluster_id:
            argv.append(f"--cluster-id={self.cluster_id}")
        argv += self.controller_args + list(extra)
        self.controller = self._popen(argv, "controller.log")
        wait_for(lambda: os.path.exists(cf) and os.path.getsize(cf) > 0 or self._controller_died(),
                 what="connection file")
        if self.controller.poll() is not None:
            raise RuntimeError("controller exited:\n" + self.log("controller.log"))
        return self.controller

    def _controller_died(self):
        return self.controller.poll() is not None

    def start_engines(self, n, wait=True, extra=()):
        """Stock ipyparallel engines."""
        return self._start_engines([sys.executable, "-m", "ipyparallel.engine"], n, wait, extra)

    def wait_for_engines(self, n, timeout=60):
        # Ask the hub (queue_status), not client.ids: a client misses registration notifications
        # published before its SUB socket was connected (PUB/SUB), with the stock controller too.
        client = self.client()
        wait_for(lambda: len([k for k in client.queue_status() if isinstance(k, int)]) >= n,
                 timeout=timeout, what=f"{n} engines")

    def start_native_engines(self, n, wait=True, extra=()):
        """Our C++ ipengine processes."""
        return self._start_engines([IPENGINE], n, wait, extra)

    def _start_engines(self, program, n, wait, extra):
        before = len(self.engines)
        for i in range(n):
            argv = program + [f"--profile-dir={self.profile_dir}", "--log-level=DEBUG"] + list(extra)
            if self.cluster_id:
                argv.append(f"--cluster-id={self.cluster_id}")
            self.engines.append(self._popen(argv, f"engine-{before + i}.log"))
        if wait:
            self.wait_for_engines(before + n)
        return self.engines[before:]

    def native(self):
        n = Native(self.connection_file("client"))
        self._natives.append(n)
        return n

    def client(self, **kwargs):
        import ipyparallel as ipp

        c = ipp.Client(self.connection_file("client"), timeout=20, **kwargs)
        self.clients.append(c)
        return c

    def iopub_client(self):
        """A client whose IOPub subscription has reached the controller's relay. PUB/SUB: a
        subscription arrives some time after the connect, and output published before that is
        lost — then the stock client waits forever for an execute's "idle". On a loaded machine
        that window is long. "#" is a no-op for Python and shell engines alike."""
        from ipyparallel import error as ipp_error
        c = self.client()
        if not c.ids:
            return c
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ar = c[:].execute("#", block=False)
            try:
                ar.get(5)
            except ipp_error.TimeoutError:
                continue
            if ar.wait_for_output(2):
                return c
        raise TimeoutError("IOPub never delivered an execute's output")

    def log(self, name):
        with open(os.path.join(self.workdir, name), errors="replace") as f:
            return f.read()

    @staticmethod
    def kill_group(proc, sig=signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass

    def kill_and_restore(self, engines):
        """Closes the clients, SIGKILLs the controller, starts it with --restore, and returns a new
        client once `engines` engines are back."""
        for c in self.clients:
            c.close()
        self.clients.clear()
        self.stop_controller(signal.SIGKILL)
        self.start_controller(extra=["--restore"])
        rc = self.client()
        wait_for(lambda: len(rc.ids) == engines, what="restored engines")
        return rc

    def stop_controller(self, sig=signal.SIGTERM):
        if self.controller and self.controller.poll() is None:
            self.kill_group(self.controller, sig)
            try:
                self.controller.wait(10)
            except subprocess.TimeoutExpired:
                self.kill_group(self.controller, signal.SIGKILL)
                self.controller.wait(10)

    def stop(self):
        for n in self._natives:
            n.close()
        for c in self.clients:
            try:
                c.close()
            except Exception:
                pass
        for e in self.engines:
            self.kill_group(e, signal.SIGTERM)
        self.stop_controller()
        for e in self.engines:
            try:
                e.wait(10)
            except subprocess.TimeoutExpired:
                self.kill_group(e, signal.SIGKILL)
                e.wait(10)
        for log in self._logs:
            log.close()


class Native:
    """Sends native-call apply_requests (our engines' protocol, see protocol/PROTOCOL.md) on a
    socket of its own, signed with the cluster's key."""

    def __init__(self, client_file):
        from jupyter_client.session import Session
        info = json.load(open(client_file))
        self.session = Session(key=info["key"].encode(), signature_scheme="hmac-sha256")
        self.ctx = zmq.Context()
        self.sockets = {}
        for channel in ("mux", "control"):
            s = self.ctx.socket(zmq.DEALER)
            s.linger = 0
            if info.get("curve_serverkey"):
                s.curve_serverkey = info["curve_serverkey"].encode()
                s.curve_publickey, s.curve_secretkey = zmq.curve_keypair()
            s.connect(f"{info['interface']}:{info[channel]}")
            self.sockets[channel] = s

    def send(self, engine_uuid, msg_type, content, channel="mux", buffers=None):
        return self.session.send(self.sockets[channel], msg_type, content=content,
                                 ident=engine_uuid.encode(), buffers=buffers)

    def recv(self, channel="mux", timeout=20):
        s = self.sockets[channel]
        if not s.poll(int(timeout * 1000)):
            raise TimeoutError(f"no reply on {channel} within {timeout}s")
        idents, msg = self.session.recv(s, mode=0)
        return msg

    def call(self, engine_uuid, function, args=None, buffers=None, timeout=20):
        sent = self.send(engine_uuid, "apply_request", {"ipp_call": {"function": function, "args": args}},
                         buffers=buffers)
        reply = self.recv(timeout=timeout)
        assert reply["parent_header"]["msg_id"] == sent["header"]["msg_id"]
        return reply

    def close(self):
        for s in self.sockets.values():
            s.close()
        self.ctx.term()


@pytest.fixture
def make_cluster(tmp_path):
    clusters = []

    def make(engines=2, controller_args=(), cluster_id="", native_engines=0, engine_args=(),
             stock_controller=False):
        c = Cluster(str(tmp_path / f"c{len(clusters)}"), controller_args, cluster_id, stock_controller)
        os.makedirs(c.workdir, exist_ok=True)
        clusters.append(c)
        c.start_controller()
        if engines:
            c.start_engines(engines)
        if native_engines:
            c.start_native_engines(native_engines, extra=engine_args)
        return c

    yield make
    for c in clusters:
        c.stop()


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory):
    """Two engines shared by the tests of a module that do not disturb the cluster."""
    c = Cluster(str(tmp_path_factory.mktemp("shared")))
    c.start_controller()
    c.start_engines(2)
    yield c
    c.stop()
