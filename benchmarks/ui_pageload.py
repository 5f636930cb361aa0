#!/usr/bin/env python3
"""Page-load figures of the web UI, measured in headless Chromium (Debian's chromium via Playwright).

For the login page, the DAG list and a DAG's grid view, cold (empty browser cache) and warm (same
browser, cache filled, the page loaded again), it reports from the browser's navigation timing
(performance.getEntriesByType('navigation')): time to first byte, DOMContentLoaded and load, and
the time until the app's content is visible (a MutationObserver in the page notes the first frame
in which the page's marker elements are rendered and visible; all times from navigation start).

    benchmarks/ui_pageload.py                      # starts a throw-away stack on free ports, measures, removes it
    benchmarks/ui_pageload.py --api-url http://127.0.0.1:48080 --username admin --password ...
    benchmarks/ui_pageload.py --api-url ... --json-out figures.json --warm-runs 7

Prints a table and then one JSON document. Goal: every page under 1 s warm (content visible).
Exit code 0 when the goal is met, 3 when not, 1 on error.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
GOAL_WARM_MS = 1000.0

# Marks the first animation frame in which every CSS selector in window.__pl_markers matches a
# visible element with non-empty text (or an input), as performance.now() since navigation start.
WATCH_SCRIPT = """
(() => {
  const markers = %s;
  const visible = (el) => {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) return false;
    const s = getComputedStyle(el);
    if (s.visibility === 'hidden' || s.display === 'none' || s.opacity === '0') return false;
    return el.tagName === 'INPUT' || (el.textContent || '').trim().length > 0;
  };
  const done = () => markers.every((sel) => Array.from(document.querySelectorAll(sel)).some(visible));
  const check = () => {
    if (window.__pl_visible_at !== undefined) return;
    if (document.documentElement && done()) {
      window.__pl_visible_at = performance.now();
    } else {
      requestAnimationFrame(check);
    }
  };
  requestAnimationFrame(check);
})();
"""

NAV_TIMING = """
() => {
  const n = performance.getEntriesByType('navigation')[0];
  const res = performance.getEntriesByType('resource');
  return {
    ttfb_ms: n.responseStart, dom_content_loaded_ms: n.domContentLoadedEventEnd, load_ms: n.loadEventEnd,
    transfer_kb: (n.transferSize + res.reduce((a, r) => a + (r.transferSize || 0), 0)) / 1024,
    requests: 1 + res.length,
    cached_requests: res.filter((r) => r.transferSize === 0 && r.decodedBodySize > 0).length,
    url: n.name,
  };
}
"""


def pages(base: str, dag_id: str, task_id: str) -> list[dict]:
    return [
        {"name": "login page", "url": f"{base}/auth/login/", "auth": False, "markers": ["#username", "#password"]},
        {"name": "DAG list", "url": f"{base}/dags", "auth": True,
         "markers": [f'a[href$="/dags/{dag_id}"]']},
        {"name": f"DAG grid ({dag_id})", "url": f"{base}/dags/{dag_id}", "auth": True,
         "markers": [f'a[href$="/dags/{dag_id}/tasks/{task_id}"]', f'a[href*="/dags/{dag_id}/runs/"]']},
    ]


def measure_once(page, spec: dict, timeout_ms: float) -> dict:
    page.goto(spec["url"], wait_until="load", timeout=timeout_ms)
    page.wait_for_function("() => window.__pl_visible_at !== undefined", timeout=timeout_ms)
    # loadEventEnd is 0 until the load handler returned; wait for it too.
    page.wait_for_function("() => performance.getEntriesByType('navigation')[0].loadEventEnd > 0",
                           timeout=timeout_ms)
    timing = page.evaluate(NAV_TIMING)
    timing["content_visible_ms"] = page.evaluate("() => window.__pl_visible_at")
    return timing


def new_context(browser, spec_markers_by_url: dict[str, list[str]]):
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    # One watcher per page: the init script picks the markers of the URL being loaded.
    ctx.add_init_script("""
(() => {
  const byUrl = %s;
  const here = location.href.split('#')[0].split('?')[0].replace(/\\/$/, '');
  const markers = byUrl[here];
  if (!markers) return;
  %s
})();
""" % (json.dumps(spec_markers_by_url), WATCH_SCRIPT.replace("const markers = %s;", "")))
    return ctx


def log_in(page, base: str, username: str, password: str, timeout_ms: float) -> None:
    page.goto(f"{base}/", timeout=timeout_ms)
    page.wait_for_url("**/auth/login/**", timeout=timeout_ms)
    page.fill("#username", username)
    page.fill("#password", password)
    page.locator("input[type=submit], button[type=submit]").first.click()
    page.get_by_role("button", name="User").wait_for(timeout=timeout_ms)


def clear_cache(ctx, page) -> None:
    cdp = ctx.new_cdp_session(page)
    cdp.send("Network.clearBrowserCache")
    cdp.detach()


def run(base: str, username: str, password: str, dag_id: str, task_id: str, warm_runs: int,
        timeout_ms: float) -> list[dict]:
    from playwright.sync_api import sync_playwright

    specs = pages(base, dag_id, task_id)
    by_url = {s["url"].rstrip("/"): s["markers"] for s in specs}
    rows = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
                                     args=CHROMIUM_ARGS, headless=True)
        try:
            for spec in specs:
                ctx = new_context(browser, by_url)
                page = ctx.new_page()
                if spec["auth"]:
                    log_in(page, base, username, password, timeout_ms)
                clear_cache(ctx, page)  # cold: nothing in the HTTP cache (the session cookie stays)
                cold = measure_once(page, spec, timeout_ms)
                warm = [measure_once(page, spec, timeout_ms) for _ in range(warm_runs)]
                ctx.close()
                rows.append({"page": spec["name"], "url": spec["url"], "cold": cold, "warm": warm,
                             "warm_median": {k: statistics.median(w[k] for w in warm)
                                             for k in ("ttfb_ms", "dom_content_loaded_ms", "load_ms",
                                                       "content_visible_ms", "transfer_kb")},
                             "warm_max_content_visible_ms": max(w["content_visible_ms"] for w in warm)})
        finally:
            browser.close()
    return rows


def print_table(rows: list[dict], warm_runs: int) -> None:
    hdr = f"{'page':<24} {'':<5} {'TTFB':>7} {'DCL':>7} {'load':>7} {'visible':>8} {'KB':>7}"
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        for label, t in (("cold", r["cold"]), ("warm", r["warm_median"])):
            print(f"{r['page'] if label == 'cold' else '':<24} {label:<5} {t['ttfb_ms']:>6.0f}ms "
                  f"{t['dom_content_loaded_ms']:>5.0f}ms {t['load_ms']:>5.0f}ms {t['content_visible_ms']:>6.0f}ms "
                  f"{t['transfer_kb']:>7.1f}")
    print(f"(warm = median of {warm_runs} reloads in the same browser; times from navigation start; "
          f"goal: visible < {GOAL_WARM_MS:.0f} ms warm)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--api-url", help="a running stack's UI/API URL; default: start a throw-away stack")
    ap.add_argument("--username", default="admin")
    ap.add_argument("--password", default=os.environ.get("AIRFLOW_PASSWORD"),
                    help="admin password (or $AIRFLOW_PASSWORD)")
    ap.add_argument("--dag", default="example_bash", help="the DAG whose grid is loaded")
    ap.add_argument("--task", default="greet", help="a task of --dag (marks the grid as rendered)")
    ap.add_argument("--warm-runs", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per page load")
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args(argv)

    stack = None
    try:
        if args.api_url:
            if not args.password:
                ap.error("--password (or $AIRFLOW_PASSWORD) is needed with --api-url")
            base, username, password = args.api_url.rstrip("/"), args.username, args.password
        else:
            sys.path.insert(0, str(REPO))
            from tests.conftest import start_stack  # a stack in a temp home on free ports

            print("starting a throw-away stack on free ports ...", file=sys.stderr)
            t0 = time.monotonic()
            stack = start_stack("af-bench-ui-")
            print(f"stack healthy in {time.monotonic() - t0:.0f} s", file=sys.stderr)
            auth = stack.credentials()["api"]["auth"]
            base, username, password = stack.api, auth["username"], auth["password"]
        ensure_a_run(base, username, password, args.dag)
        rows = run(base, username, password, args.dag, args.task, args.warm_runs, args.timeout * 1000)
    finally:
        if stack is not None:
            from tests.conftest import stop_and_remove

            stop_and_remove(stack)

    print_table(rows, args.warm_runs)
    worst_warm = max(r["warm_median"]["content_visible_ms"] for r in rows)
    result = {"api_url": base if args.api_url else "(throw-away stack)", "dag": args.dag,
              "warm_runs": args.warm_runs, "goal_warm_ms": GOAL_WARM_MS,
              "goal_met": worst_warm < GOAL_WARM_MS, "load_average": os.getloadavg(),
              "cpus": os.cpu_count(), "pages": rows}
    doc = json.dumps(result, indent=2)
    if args.json_out:
        args.json_out.write_text(doc + "\n")
    print(doc)
    return 0 if result["goal_met"] else 3


def ensure_a_run(base: str, username: str, password: str, dag_id: str) -> None:
    """The grid should show at least one run: trigger one (and wait for it) when the DAG has none."""
    token = requests.post(f"{base}/auth/token", json={"username": username, "password": password},
                          timeout=60).json()["access_token"]
    h = {"Authorization": f"Bearer {token}"}
    runs = requests.get(f"{base}/api/v2/dags/{dag_id}/dagRuns", headers=h, params={"limit": 1}, timeout=60).json()
    if runs.get("total_entries", 0):
        return
    requests.patch(f"{base}/api/v2/dags/{dag_id}", headers=h, json={"is_paused": False}, timeout=60)
    r = requests.post(f"{base}/api/v2/dags/{dag_id}/dagRuns", headers=h, json={"logical_date": None}, timeout=60)
    r.raise_for_status()
    run_id = r.json()["dag_run_id"]
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        state = requests.get(f"{base}/api/v2/dags/{dag_id}/dagRuns/{run_id}", headers=h, timeout=60).json()["state"]
        if state in ("success", "failed"):
            return
        time.sleep(2)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
