"""The pipeline submitted with `ray job submit` to a 2-node Ray cluster, its run on a file:// store.

Two Ray nodes on this machine (a head and a worker, two logical CPUs each; a Ray Train worker asks
for two, so the two workers need both nodes, and Ray Data spreads its tasks by default),
`cogumi pipeline run configs/smoke.yaml` through the stages that use Ray Data (curate, generate,
judge) and Ray Train (train_base), then Ray's state API says on which node each task and actor ran.
(One CPU per node deadlocks: two 0.5-CPU judge actors, one per node, leave no node a whole CPU for
the read tasks that feed them.)
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
UNTIL = "judge"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def two_node_cluster():
    from ray.cluster_utils import Cluster

    port = _free_port()
    # Own agent ports: the suite's local Ray already holds the default (52365), and a head whose
    # agent cannot bind accepts no job ("No available agent to submit job").
    cluster = Cluster(initialize_head=True, connect=False, head_node_args={
        "num_cpus": 2, "include_dashboard": True, "dashboard_host": "127.0.0.1",
        "dashboard_port": port, "dashboard_agent_listen_port": _free_port()})
    try:
        cluster.add_node(num_cpus=2, dashboard_agent_listen_port=_free_port())
        cluster.wait_for_nodes()
        yield cluster, f"http://127.0.0.1:{port}"
    finally:
        cluster.shutdown()


def _job_client(url: str, timeout: float = 120):
    """A job client once the dashboard answers (Ray's client sends the cluster's auth token)."""
    from ray.job_submission import JobSubmissionClient

    deadline = time.monotonic() + timeout
    while True:
        try:
            return JobSubmissionClient(url)
        except (ConnectionError, RuntimeError):
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


@pytest.mark.slow
def test_ray_job_submit_runs_the_pipeline_on_both_nodes(two_node_cluster, tmp_path):
    from ray.job_submission import JobStatus
    from ray.util.state import list_actors, list_nodes, list_tasks

    _, url = two_node_cluster
    client = _job_client(url)
    root = f"file://{tmp_path}"
    cogumi = str(Path(sys.executable).with_name("cogumi"))
    entrypoint = [cogumi, "pipeline", "run", str(REPO / "configs" / "smoke.yaml"), "--root", root,
                  "--until", UNTIL, "--set", "ray.address=auto", "--set", "train.num_workers=2",
                  "--set", "train.cpus_per_worker=2"]
    job_id = "cogumi-two-node-test"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    submit_cmd = [str(Path(sys.executable).with_name("ray")), "job", "submit", "--address", url,
                  "--submission-id", job_id, "--no-wait", "--", *entrypoint]
    for _ in range(20):  # the head's job agent starts a little after the dashboard answers
        submit = subprocess.run(submit_cmd, env=env, capture_output=True, text=True, timeout=300)
        if submit.returncode == 0 or "No available agent" not in submit.stderr:
            break
        time.sleep(2)
    assert submit.returncode == 0, submit.stderr[-3000:]

    deadline = time.monotonic() + 1800
    while not (status := client.get_job_status(job_id)).is_terminal():
        assert time.monotonic() < deadline, "job did not finish in 30 min"
        time.sleep(5)
    logs = client.get_job_logs(job_id)
    assert status == JobStatus.SUCCEEDED, logs[-4000:]

    manifest = json.loads((tmp_path / "smoke" / "manifest.json").read_text())
    for stage in ("curate", "train_base", "generate", "judge"):
        assert manifest["stages"][stage]["status"] == "done", stage

    nodes = {n.node_id for n in list_nodes(address=url) if n.state == "ALIVE"}
    assert len(nodes) == 2
    job_hex = next(j.job_id for j in client.list_jobs() if j.submission_id == job_id)
    tasks = list_tasks(address=url, filters=[("job_id", "=", job_hex)], limit=10_000,
                       raise_on_missing_output=False)
    data_nodes = {t.node_id for t in tasks if t.node_id and _is_data_task(t.name)}
    assert data_nodes == nodes, sorted({t.name for t in tasks})
    actors = list_actors(address=url, filters=[("job_id", "=", job_hex)], limit=10_000,
                         raise_on_missing_output=False, detail=True)
    train_nodes = {a.node_id for a in actors if "TrainWorker" in a.class_name}
    assert train_nodes == nodes, sorted({a.class_name for a in actors})


def _is_data_task(name: str) -> bool:
    """Ray Data's operator tasks (reads, map batches, shuffles), not Ray Train's or ours."""
    return any(k in name for k in ("ReadFiles", "read_piece", "Map", "Shuffle", "Aggregate"))
