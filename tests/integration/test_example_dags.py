"""The pattern example DAGs in dags/ on the real stack: each run succeeds and shows its pattern at work.

All DAGs are triggered at once (one thread each, through test_stack's `_run_dag`) and the
module's tests then inspect the finished runs, so the whole file costs about one slow DAG.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pytest
import requests

from tests.integration.test_stack import DAG_RUN_TIMEOUT_S, _run_dag

pytestmark = pytest.mark.integration

PATTERN_DAGS = (
    "example_taskflow_xcom",
    "example_dynamic_mapping",
    "example_batch_items",
    "example_branching",
    "example_task_groups",
    "example_deferrable_sensor",
    "example_asset_producer",
    "example_retries",
    "example_bash",
    "example_virtualenv",
)
CONSUMER = "example_asset_consumer"
PARSE_TIMEOUT_S = 120


class _CachedTokenStack:
    """The running stack with one JWT for all calls.

    RunningStack.rest asks the CLI for credentials and logs in on every call; a dozen threads
    polling that way would load the machine more than the DAGs do.
    """

    def __init__(self, stack):
        self._stack = stack
        self._token = stack.token()
        self._lock = threading.Lock()
        self.wait_for = stack.wait_for

    def rest(self, method: str, path: str, **kw) -> requests.Response:
        headers = kw.pop("headers", {})
        for _ in range(2):
            r = requests.request(method, f"{self._stack.api}/api/v2{path}", timeout=30,
                                 headers={"Authorization": f"Bearer {self._token}", **headers}, **kw)
            if r.status_code != 401:
                return r
            with self._lock:
                self._token = self._stack.token()
        return r

    def get(self, path: str, **kw):
        r = self.rest("GET", path, **kw)
        assert r.status_code == 200, f"GET {path}: {r.status_code} {r.text[:500]}"
        return r.json()


class _StateWatcher(threading.Thread):
    """Records every state the sensor's task instance is seen in while the runs are going."""

    def __init__(self, api: _CachedTokenStack, dag_id: str, task_id: str):
        super().__init__(daemon=True)
        self.api, self.path, self.task_id = api, f"/dags/{dag_id}/dagRuns/~/taskInstances", task_id
        self.seen: set[str | None] = set()
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                r = self.api.rest("GET", self.path, params={"task_id": self.task_id})
                if r.status_code == 200:
                    self.seen.update(ti["state"] for ti in r.json()["task_instances"])
            except requests.RequestException:
                pass
            self.stop.wait(0.3)


def _seconds(start: str, end: str) -> float:
    return (datetime.fromisoformat(end.replace("Z", "+00:00")) - datetime.fromisoformat(start.replace("Z", "+00:00"))).total_seconds()


@pytest.fixture(scope="module")
def api(running_stack):
    return _CachedTokenStack(running_stack)


@pytest.fixture(scope="module")
def example_runs(running_stack, api):
    """Every pattern DAG triggered at once and finished: {dag_id: (run_id, run)}, plus the consumer's run."""
    # The consumer only gets runs from asset events while unpaused, so unpause it before the producer runs.
    api.wait_for(lambda: api.rest("GET", f"/dags/{CONSUMER}").status_code == 200, PARSE_TIMEOUT_S, f"{CONSUMER} to be parsed")
    assert api.rest("PATCH", f"/dags/{CONSUMER}", json={"is_paused": False}).status_code == 200

    watcher = _StateWatcher(api, "example_deferrable_sensor", "wait")
    watcher.start()
    started = time.monotonic()
    try:
        with ThreadPoolExecutor(max_workers=len(PATTERN_DAGS)) as pool:
            futures = {dag_id: pool.submit(_run_dag, api, dag_id) for dag_id in PATTERN_DAGS}
            runs = {dag_id: f.result() for dag_id, f in futures.items()}
    finally:
        watcher.stop.set()
        watcher.join(5)
    producer_run_id = runs["example_asset_producer"][0]

    def consumer_run():
        for run in api.get(f"/dags/{CONSUMER}/dagRuns")["dag_runs"]:
            events = api.get(f"/dags/{CONSUMER}/dagRuns/{run['dag_run_id']}/upstreamAssetEvents")["asset_events"]
            if any(e["source_run_id"] == producer_run_id for e in events) and run["state"] in ("success", "failed"):
                return run["dag_run_id"], run
        return None

    runs[CONSUMER] = api.wait_for(consumer_run, DAG_RUN_TIMEOUT_S, f"a finished {CONSUMER} run from {producer_run_id}")
    print(f"\nall example DAGs finished in {time.monotonic() - started:.1f} s")
    for dag_id, (_, run) in runs.items():
        print(f"  {dag_id}: {run['state']} in {_seconds(run['start_date'], run['end_date']):.1f} s")
    return {"runs": runs, "sensor_states": watcher.seen}


def _tis(api, dag_id: str, run_id: str) -> dict[tuple[str, int], dict]:
    tis = api.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 100})["task_instances"]
    return {(ti["task_id"], ti["map_index"]): ti for ti in tis}


def _xcom(api, dag_id: str, run_id: str, task_id: str, key: str = "return_value"):
    return api.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}")["value"]


def _log(api, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
    r = api.rest("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
                 headers={"Accept": "application/json"})
    assert r.status_code == 200, r.text
    return r.text


def test_example_dags_parse_without_import_errors(api):
    errors = api.get("/importErrors")["import_errors"]
    assert [e for e in errors if "example_" in e["filename"]] == []
    for dag_id in (*PATTERN_DAGS, CONSUMER):
        dag = api.get(f"/dags/{dag_id}")
        assert "example" in {t["name"] for t in dag["tags"]}, dag_id


@pytest.mark.parametrize("dag_id", (*PATTERN_DAGS, CONSUMER))
def test_example_dag_run_succeeds(api, example_runs, dag_id):
    run_id, run = example_runs["runs"][dag_id]
    states = {f"{t}[{i}]" if i >= 0 else t: ti["state"] for (t, i), ti in _tis(api, dag_id, run_id).items()}
    assert run["state"] == "success", states
    allowed = {"success", "skipped"} if dag_id == "example_branching" else {"success"}
    assert states and set(states.values()) <= allowed, states


def test_taskflow_xcom_pushes_each_key_of_multiple_outputs(api, example_runs):
    dag_id = "example_taskflow_xcom"
    run_id, _ = example_runs["runs"][dag_id]
    keys = {e["key"] for e in api.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/summarize/xcomEntries")["xcom_entries"]}
    assert keys == {"return_value", "count", "total", "mean"}
    assert _xcom(api, dag_id, run_id, "summarize", "total") == 54.5
    assert _xcom(api, dag_id, run_id, "summarize") == {"count": 4, "total": 54.5, "mean": 13.62}
    assert _xcom(api, dag_id, run_id, "double") == 109.0
    assert _xcom(api, dag_id, run_id, "report") == "4 orders, total 54.5, mean 13.62, doubled 109.0"


def test_dynamic_mapping_expands_one_task_instance_per_batch(api, example_runs):
    dag_id = "example_dynamic_mapping"
    run_id, _ = example_runs["runs"][dag_id]
    mapped = {i: ti for (t, i), ti in _tis(api, dag_id, run_id).items() if t == "process"}
    assert sorted(mapped) == [0, 1, 2, 3, 4]
    assert {ti["state"] for ti in mapped.values()} == {"success"}
    assert _xcom(api, dag_id, run_id, "make_batches") == [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 12], [13, 14, 15]]
    assert _xcom(api, dag_id, run_id, "reduce") == 10 * sum(range(1, 16))  # the reduce step checked each mapped result


def test_batch_items_processes_every_item_once_in_twenty_mapped_tasks(api, example_runs):
    dag_id = "example_batch_items"
    run_id, _ = example_runs["runs"][dag_id]
    mapped = {i: ti for (t, i), ti in _tis(api, dag_id, run_id).items() if t == "process"}
    assert sorted(mapped) == list(range(20)) and {ti["state"] for ti in mapped.values()} == {"success"}
    assert _xcom(api, dag_id, run_id, "total") == 10_000


def test_branching_skips_the_branch_not_chosen_and_joins(api, example_runs):
    dag_id = "example_branching"
    run_id, _ = example_runs["runs"][dag_id]
    states = {t: ti["state"] for (t, _), ti in _tis(api, dag_id, run_id).items()}
    assert states == {"choose": "success", "small_path": "success", "large_path": "skipped", "join": "success"}
    assert _xcom(api, dag_id, run_id, "join") == "processed in one step"


def test_task_groups_repeat_a_nested_group(api, example_runs):
    dag_id = "example_task_groups"
    run_id, _ = example_runs["runs"][dag_id]
    task_ids = {t for t, _ in _tis(api, dag_id, run_id)}
    expected = {f"per_{r}.{t}" for r in ("eu", "us", "apac")
                for t in ("extract", "validate.check_schema", "validate.check_not_empty", "load")}
    assert task_ids == expected | {"combine"}
    assert _xcom(api, dag_id, run_id, "per_us.load") == {"region": "us", "rows": 2, "total": 30}
    assert _xcom(api, dag_id, run_id, "combine") == 12 + 30 + 7


def test_deferrable_sensor_waits_on_the_triggerer(api, example_runs):
    dag_id = "example_deferrable_sensor"
    run_id, _ = example_runs["runs"][dag_id]
    assert "deferred" in example_runs["sensor_states"], example_runs["sensor_states"]
    wait = _tis(api, dag_id, run_id)[("wait", -1)]
    assert wait["state"] == "success" and wait["try_number"] == 1  # deferring and resuming is not a retry
    log = _log(api, dag_id, run_id, "wait")
    assert "Pausing task as DEFERRED" in log          # the worker handed the task over...
    assert "Trigger fired event" in log               # ...the triggerer's DateTimeTrigger fired...
    assert "trigger completed" in log
    assert _xcom(api, dag_id, run_id, "after_wait") >= 5  # ...and the downstream task ran after the wait


def test_asset_event_from_the_producer_triggers_the_consumer(running_stack, api, example_runs):
    producer_run_id, _ = example_runs["runs"]["example_asset_producer"]
    run_id, run = example_runs["runs"][CONSUMER]
    assert run["run_type"] == "asset_triggered" and run["state"] == "success"
    events = api.get(f"/dags/{CONSUMER}/dagRuns/{run_id}/upstreamAssetEvents")["asset_events"]
    event = next(e for e in events if e["source_run_id"] == producer_run_id)
    assert event["name"] == "example_greeting"
    assert (event["source_dag_id"], event["source_task_id"]) == ("example_asset_producer", "write_greeting")
    path = event["extra"]["path"]
    assert path.startswith(str(running_stack.home / "data" / "example_asset"))
    assert path == _xcom(api, "example_asset_producer", producer_run_id, "write_greeting")
    assert "hello from example_asset_producer" in _xcom(api, CONSUMER, run_id, "read_greeting")


def test_retry_fails_the_first_try_and_succeeds_the_second(api, example_runs):
    dag_id = "example_retries"
    run_id, _ = example_runs["runs"][dag_id]
    flaky = _tis(api, dag_id, run_id)[("flaky", -1)]
    assert (flaky["state"], flaky["try_number"], flaky["max_tries"]) == ("success", 2, 1)
    tries = api.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/flaky/tries")["task_instances"]
    by_try = {t["try_number"]: t for t in tries}
    assert by_try[1]["state"] == "failed" and by_try[2]["state"] == "success"
    assert _seconds(by_try[1]["end_date"], by_try[2]["start_date"]) >= 3  # retry_delay
    assert "planned failure on try 1" in _log(api, dag_id, run_id, "flaky", 1)
    assert "succeeded on try 2" in _log(api, dag_id, run_id, "flaky", 2)


def test_bash_output_is_in_the_log_and_xcom(api, example_runs):
    dag_id = "example_bash"
    run_id, _ = example_runs["runs"][dag_id]
    line = f"Hello from bash, run {run_id}, try 1"  # env var and templated values, expanded
    assert line in _log(api, dag_id, run_id, "greet")
    assert _xcom(api, dag_id, run_id, "greet") == line
    assert "words in greeting: 7" in _log(api, dag_id, run_id, "count_words")


def test_virtualenv_task_runs_in_its_own_interpreter(running_stack, api, example_runs):
    dag_id = "example_virtualenv"
    run_id, _ = example_runs["runs"][dag_id]
    venv = _xcom(api, dag_id, run_id, "in_venv")
    worker_prefix = running_stack.env["APACHE_AIRFLOW_VENV"]
    assert venv["prefix"] != worker_prefix
    assert venv["prefix"].startswith(str(running_stack.home / "data" / "example_virtualenv" / "venvs" / "venv-"))
    assert venv["executable"].startswith(venv["prefix"])
    assert venv["airflow_importable"] is False and venv["median"] == 3
    assert _xcom(api, dag_id, run_id, "compare") == {"worker_prefix": worker_prefix, "venv_prefix": venv["prefix"]}
    assert f"running in {venv['prefix']}" in _log(api, dag_id, run_id, "in_venv")
