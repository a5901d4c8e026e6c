"""serve_configs/local-cpu.yaml deployed by Ray's own CLI, as its header says: `serve run FILE`
from a checkout whose runs/demo/ holds a run (here the tiny GGUF and its LoRA GGUFs under the
file's relative paths), then called with the official `openai` SDK.

`serve run` starts its own local Ray (not the test session's), so the file runs exactly as a
person runs it; only its HTTP port is changed, to a free one."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from test_serve_app import _free_port

openai = pytest.importorskip("openai")
pytest.importorskip("llama_cpp")

ROOT = Path(__file__).resolve().parents[2]
CPU = ROOT / "serve_configs" / "local-cpu.yaml"
SERVE = Path(sys.executable).with_name("serve")  # the venv's `serve` console script
KEY = "sk-cli"
READY_S = 240  # a fresh Ray, its dashboard, the Serve controller, three deployments


def _checkout(root: Path, args: dict, gguf: str, loras: dict[str, str]) -> None:
    """Lay the tiny run out under `root` at the paths the file's args name (relative to the
    directory `serve run` starts in): the base GGUF, and a tiny LoRA GGUF per modifier name."""
    files = list(loras.values())
    targets = {args["base"]: gguf, **{path: files[i % len(files)]
                                      for i, path in enumerate(args["adapters"].values())}}
    for rel, target in targets.items():
        assert not os.path.isabs(rel), rel  # the file must stay portable across checkouts
        link = root / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target)


def _wait_ready(proc: subprocess.Popen, url: str, log: Path) -> list[str]:
    """The model ids once GET /v1/models answers (the app is RUNNING), else fail with the log."""
    import httpx

    deadline = time.monotonic() + READY_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"`serve run` exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            r = httpx.get(f"{url}/models", headers={"Authorization": f"Bearer {KEY}"}, timeout=5)
            if r.status_code == 200:
                return [m["id"] for m in r.json()["data"]]
        except httpx.HTTPError:
            pass
        time.sleep(1)
    pytest.fail(f"no answer at {url}/models after {READY_S} s:\n{log.read_text()[-4000:]}")


def _group_gone(pgid: int, timeout_s: float) -> bool:
    """Whether process group `pgid` is empty within `timeout_s`; if not, it is killed."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.5)
    os.killpg(pgid, signal.SIGKILL)
    return False


def _stop(proc: subprocess.Popen) -> None:
    """Ctrl-C to `serve run` (it shuts Serve down, then the Ray it started); its process group is
    killed if that takes too long."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


@pytest.mark.slow  # a fresh Ray + Serve in a subprocess: ~1 min on the shared 2-core box
def test_serve_run_local_cpu_yaml(serve_gguf, lora_ggufs, tmp_path):
    config = yaml.safe_load(CPU.read_text())
    (app,) = config["applications"]
    _checkout(tmp_path, app["args"], serve_gguf, lora_ggufs)
    port = _free_port()
    # The file as shipped, on a free port (Serve's config format has no port override).
    config["http_options"]["port"] = port
    deployed = tmp_path / "local-cpu.yaml"
    deployed.write_text(yaml.safe_dump(config, sort_keys=False))

    # Short socket paths (AF_UNIX limit) and a Ray temp dir of its own: another Ray on this
    # machine never sees this one (nor `ray.init(address="auto")` picks it up).
    ray_tmp = tempfile.mkdtemp(prefix="ray-cli-", dir="/tmp")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
    env.update(
        RAY_TMPDIR=ray_tmp, COGUMI_API_KEYS=KEY,
        # The generator asks for 2 CPUs and the ingress and router 0.1 each: room for one
        # generator replica (autoscaling cannot add a second on this box), object store small.
        RAY_OVERRIDE_RESOURCES=json.dumps({"CPU": 3, "object_store_memory": 256 * 1024**2}),
    )
    log = tmp_path / "serve-run.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(SERVE), "run", str(deployed)], cwd=tmp_path, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        models = _wait_ready(proc, url, log)
        names = sorted(app["args"]["adapters"])
        assert sorted(models) == sorted(["model-f16", "cogumi", *(f"cogumi:{n}" for n in names)])

        client = openai.OpenAI(base_url=url, api_key=KEY, max_retries=0, timeout=120)
        assert sorted(m.id for m in client.models.list()) == sorted(models)
        resp = client.chat.completions.create(
            model=f"cogumi:{names[0]}", messages=[{"role": "user", "content": "What is 2 + 3?"}],
            max_tokens=8, temperature=0)
        assert resp.choices[0].message.content and resp.usage.completion_tokens >= 1
        assert resp.cogumi["option"] == names[0]
        with pytest.raises(openai.AuthenticationError):  # $COGUMI_API_KEYS reached the app
            openai.OpenAI(base_url=url, api_key="sk-wrong", max_retries=0).models.list()
    finally:
        _stop(proc)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    # Nothing of that Ray is left: its processes (in the process group we started) exit too.
    assert _group_gone(proc.pid, 30), "processes of `serve run`'s Ray outlived it (killed now)"
