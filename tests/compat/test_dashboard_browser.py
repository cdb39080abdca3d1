"""The dashboard page in a real browser: headless Chromium (Debian's `chromium`, driven over its
DevTools protocol) opens the controller's dashboard against a real cluster of our engines with
the pi plugin, sees one row per engine, the done count and the task stream grow while 1,000 tasks
run, and an engine killed with SIGKILL turn dead; then the page again with EventSource taken
away, which must fall back to polling. Saves screenshots under the build dir
(test-artifacts/dashboard*.png)."""
import json
import os
import signal
import time

import pytest

from chromium_cdp import Browser, find_chromium
from conftest import BIN_DIR, LIB_DIR, wait_for

PI_PLUGIN = os.path.abspath(os.path.join(LIB_DIR, "libipp_example_pi.so"))
ARTIFACTS = os.path.abspath(os.path.join(BIN_DIR, "..", "test-artifacts"))
ENGINES = 3
TASKS = 1000

ROWS_JS = """[...document.querySelectorAll('#engines tbody tr')].map(r => ({
  id: r.dataset.id, state: r.dataset.state, pid: r.children[3].textContent,
  death: (r.querySelector('.death') || {}).textContent || ''}))"""
PROGRESS_JS = """document.getElementById('task-stream') ? {
  done: Number(document.getElementById('done-count').textContent.replace(/,/g, '')),
  bars: Number(document.getElementById('task-stream').dataset.bars)} : {done: -1, bars: -1}"""
LINK_JS = "(document.getElementById('link') || {}).textContent"


def _missing():
    if not find_chromium():
        return "chromium is not installed (Debian: apt-get install chromium)"
    try:
        import websocket  # noqa: F401
    except ImportError:
        return "the Python websocket client is not installed (Debian: apt-get install python3-websocket)"
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=str(_missing()))


def dashboard_url(cluster):
    path = os.path.join(cluster.security_dir, "ipcontroller-dashboard.json")
    wait_for(lambda: os.path.exists(path) and os.path.getsize(path) > 0, timeout=30, what=path)
    assert os.stat(path).st_mode & 0o777 == 0o600, oct(os.stat(path).st_mode)
    return json.load(open(path))["url"]


def screenshot(browser, name):
    os.makedirs(ARTIFACTS, exist_ok=True)
    path = os.path.join(ARTIFACTS, name)
    browser.screenshot(path)
    print(f"screenshot: {path}")
    return path


WAITING_JS = "document.getElementById('waiting-for')"


def test_dashboard_in_chromium(make_cluster):
    from ipp_native import NativeView

    cluster = make_cluster(engines=0, native_engines=ENGINES, engine_args=["--load", PI_PLUGIN])
    url = dashboard_url(cluster)
    with Browser() as browser:
        browser.open(url)
        wait_for(lambda: len(browser.eval(ROWS_JS)) == ENGINES, timeout=30, what=f"{ENGINES} engine rows")
        rows = browser.eval(ROWS_JS)
        assert all(r["state"] in ("idle", "busy") for r in rows), rows
        start = browser.eval(PROGRESS_JS)

        # 1,000 load-balanced tasks of a few milliseconds each: the page must show them arriving,
        # not only the end result.
        rc = cluster.client()
        ar = NativeView(rc).map("pi.sample", [300_000] * TASKS)
        seen = []
        while not ar.ready():
            seen.append(browser.eval(PROGRESS_JS))
            time.sleep(0.1)
        ar.get(60)
        wait_for(lambda: browser.eval(PROGRESS_JS)["done"] >= start["done"] + TASKS, timeout=15,
                 what=f"done count to reach {start['done'] + TASKS}")
        end = browser.eval(PROGRESS_JS)
        during = [p["done"] for p in seen if start["done"] < p["done"] < start["done"] + TASKS]
        assert len(set(during)) >= 2, f"the done count did not grow in steps while the tasks ran: {seen}"
        bars_during = [p["bars"] for p in seen]
        assert max(bars_during) > start["bars"] and end["bars"] >= max(bars_during), (start, seen, end)
        assert end["bars"] >= TASKS, end  # every task is a bar while it is in the stream's minute

        # A failure, for the failures panel in the screenshot.
        with pytest.raises(Exception):
            NativeView(rc).apply("fail.always").get(30)

        # SIGKILL one engine: the hub stops hearing its heartbeats and the row turns dead (and stays).
        victim = cluster.engines[1]
        cluster.kill_group(victim, signal.SIGKILL)
        victim.wait(10)
        wait_for(lambda: any(r["state"] == "dead" for r in browser.eval(ROWS_JS)), timeout=30,
                 what="a dead engine row")
        rows = browser.eval(ROWS_JS)
        dead = [r for r in rows if r["state"] == "dead"]
        assert len(rows) == ENGINES and len(dead) == 1, rows
        assert dead[0]["pid"] in (str(victim.pid), "–"), (dead, victim.pid)
        assert dead[0]["death"], f"the dead engine's row does not say how it died: {dead}"
        wait_for(lambda: browser.eval("document.querySelectorAll('#failures details').length") >= 1,
                 timeout=15, what="the failure in the failures panel")
        assert browser.eval(LINK_JS) == "live"
        screenshot(browser, "dashboard.png")
        assert not browser.errors, browser.errors

        # Without EventSource the page polls the API instead, and shows the same cluster.
        browser.call("Page.addScriptToEvaluateOnNewDocument", source="delete window.EventSource;")
        browser.open(url)
        wait_for(lambda: browser.eval(LINK_JS) == "polling"
                 and len(browser.eval(ROWS_JS)) == ENGINES, timeout=30, what="the page polling")
        wait_for(lambda: browser.eval(PROGRESS_JS)["done"] >= start["done"] + TASKS, timeout=15,
                 what="the done count while polling")
        screenshot(browser, "dashboard-polling.png")
        assert not browser.errors, browser.errors

        # Work no engine can run (a Python function; the engines are native) is said under the
        # tiles until it is aborted.
        waiting = rc.load_balanced_view().apply(lambda: 1)
        wait_for(lambda: not browser.eval(WAITING_JS + ".hidden"), timeout=15, what="the line saying what waits")
        text = browser.eval(WAITING_JS + ".textContent")
        assert text == "1 task waits for a Python engine: no connected engine can run it.", text
        rc.abort(waiting)
        wait_for(lambda: browser.eval(WAITING_JS + ".hidden"), timeout=15, what="the waiting line to go")
        assert not browser.errors, browser.errors
