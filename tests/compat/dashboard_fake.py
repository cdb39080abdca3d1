"""A stand-in for the controller's dashboard server, for working on the page without a cluster:
serves dashboard/static/ and made-up data in the shapes of the API (/api/engines, /api/tasks,
/api/stats, /api/stream), with tasks running, a failure and a dead engine.

    /usr/bin/python3 tests/compat/dashboard_fake.py [PORT]   # then open http://127.0.0.1:PORT/
"""
import http.server
import json
import math
import os
import random
import sys
import threading
import time

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "dashboard", "static")
CHART_JS = "/usr/share/javascript/chart.js/chart.min.js"
FUNCTIONS = ["pi.sample", "pi.sleep", "python", "execute"]


class World:
    """Four engines (one dead) finishing made-up tasks as time passes."""

    def __init__(self):
        self.start = time.monotonic()
        self.lock = threading.Lock()
        self.tasks, self.seq, self.failures = [], 0, []
        self.busy_until = {i: 0.0 for i in range(4)}
        self.done = {i: 0 for i in range(4)}
        self.history = []
        self.advanced = 0.0

    def now(self):
        return time.monotonic() - self.start

    def advance(self):
        with self.lock:
            now = self.now()
            while self.advanced < now:
                t = self.advanced
                for e in range(4):
                    if e == 3 and t > 20:  # engine 3 "dies" after 20 s
                        continue
                    if self.busy_until[e] <= t:
                        fn = random.choice(FUNCTIONS[:3] if e != 1 else FUNCTIONS)
                        d = random.uniform(0.05, 0.6) * (3 if e == 2 else 1)
                        self.seq += 1
                        status = "error" if random.random() < 0.01 else "ok"
                        self.tasks.append({"seq": self.seq, "msg_id": f"m{self.seq}", "engine": e, "function": fn,
                                           "status": status, "started": t, "completed": t + d})
                        if status == "error":
                            self.failures.append({"t": t + d, "engine": e, "function": fn, "ename": "ValueError",
                                                  "evalue": "bad sample", "traceback": [
                                                      "Traceback (most recent call last):",
                                                      '  File "<stdin>", line 1, in <module>',
                                                      "ValueError: bad sample"]})
                        self.busy_until[e] = t + d + random.uniform(0, 0.05)
                        self.done[e] += 1
                if int(t) != int(t + 0.05):
                    self.history.append({"t": float(int(t + 0.05)), "done_per_s": 6 + 3 * math.sin(t / 8),
                                         "queued_lb": int(40 + 30 * math.sin(t / 5)), "waiting_deps": int(t) % 7})
                self.advanced += 0.05
            self.tasks = [t for t in self.tasks if t["completed"] <= now][-4000:]
            self.history = self.history[-300:]

    def engines(self):
        now = self.now()
        out = []
        for e in range(4):
            dead = e == 3 and now > 25
            out.append({"id": e, "uuid": f"uuid-{e}", "kind": "native" if e < 2 else "python",
                        "host": "node1", "pid": 4000 + e, "state": "dead" if dead else "busy",
                        "death": "stopped answering heartbeats (3 missed)" if dead else None,
                        "task": None if dead else {"msg_id": f"r{e}", "function": "pi.sample",
                                                   "running_s": max(0.0, now - (self.busy_until[e] - 0.3))},
                        "queue": 0 if dead else e * 3, "done": self.done[e], "failed": e == 1 and 2 or 0,
                        "heartbeat_age_s": None if dead else random.uniform(0, 1), "tags": [], "functions": 7})
        return out

    def tasks_since(self, since):
        return {"seq": self.seq, "now": self.now(), "tasks": [t for t in self.tasks if t["seq"] > since]}

    def stats(self):
        done = sum(self.done.values())
        return {"now": self.now(), "uptime_s": self.now(),
                "counters": {"submitted": done + 60, "done": done, "failed": len(self.failures), "running": 3,
                             "queued_lb": 42, "waiting_deps": 3},
                "rate_done_per_s": self.history[-1]["done_per_s"] if self.history else 0,
                "history": self.history, "failures": self.failures[-100:],
                "functions": [{"name": f, "count": 100 + i, "mean_ms": 120.0 + i, "p99_ms": 580.0 + i}
                              for i, f in enumerate(FUNCTIONS)],
                "clients": [{"id": "2f6c9a0e-5b1d-4c3e-9a7f-0123456789ab", "tasks": done}],
                "controller": {"cpu_percent": 3.5, "rss_bytes": 23 * 1024 * 1024}}


WORLD = World()


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def send_body(self, body, ctype):
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        path, _, query = self.path.partition("?")
        params = dict(p.partition("=")[::2] for p in query.split("&") if p)
        WORLD.advance()
        if path == "/":
            return self.send_body(open(os.path.join(STATIC, "index.html"), "rb").read(), "text/html")
        if path == "/static/chart.js":
            return self.send_body(open(CHART_JS, "rb").read(), "text/javascript")
        if path.startswith("/static/") and "/" not in path[8:] and os.path.exists(os.path.join(STATIC, path[8:])):
            ctype = {"js": "text/javascript", "css": "text/css"}.get(path.rsplit(".", 1)[-1], "text/plain")
            return self.send_body(open(os.path.join(STATIC, path[8:]), "rb").read(), ctype)
        if path == "/api/engines":
            return self.send_body(json.dumps(WORLD.engines()).encode(), "application/json")
        if path == "/api/stats":
            return self.send_body(json.dumps(WORLD.stats()).encode(), "application/json")
        if path == "/api/tasks":
            return self.send_body(json.dumps(WORLD.tasks_since(int(params.get("since", 0)))).encode(),
                                  "application/json")
        if path == "/api/stream":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            seq = 0
            try:
                while True:
                    WORLD.advance()
                    tasks = WORLD.tasks_since(seq)
                    seq = tasks["seq"]
                    data = json.dumps({"engines": WORLD.engines(), "stats": WORLD.stats(), "tasks": tasks})
                    self.wfile.write(f"event: update\ndata: {data}\n\n".encode())
                    self.wfile.flush()
                    time.sleep(1)
            except (BrokenPipeError, ConnectionResetError):
                return
        self.send_error(404)


if __name__ == "__main__":
    server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 0), Handler)
    server.daemon_threads = True
    print(f"http://127.0.0.1:{server.server_address[1]}/", flush=True)
    server.serve_forever()
