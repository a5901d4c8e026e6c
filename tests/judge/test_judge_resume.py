"""A judging process killed half way (SIGKILL, no clean-up) loses at most the request in flight:
the re-run gets every reply already paid for from the cache and asks the API only for the rest."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from fake_llm_server import FakeLLMServer

from cogumi_ray.judge.cache import JudgeCache
from cogumi_ray.judge.config import JudgeConfig
from cogumi_ray.judge.judges import make_judge

KEY_ENV = "COGUMI_TEST_JUDGE_KEY"
os.environ.setdefault(KEY_ENV, "test-key")

SCRIPT = textwrap.dedent("""
    import json, sys
    from cogumi_ray.judge.cache import JudgeCache
    from cogumi_ray.judge.config import JudgeConfig
    from cogumi_ray.judge.judges import make_judge
    cfg = JudgeConfig.model_validate(json.loads(sys.argv[1]))
    rows = json.loads(sys.argv[3])
    make_judge(cfg, cache=JudgeCache(sys.argv[2])).judge_rows(rows)
    print("finished")
""")


# The cache logic is the clients' shared base; the second provider only re-checks it (slow).
@pytest.mark.parametrize("judge", ["openai", pytest.param("anthropic", marks=pytest.mark.slow)])
def test_killed_run_resumes_from_the_cache(judge, tmp_path):
    server = FakeLLMServer().start()
    route = {"anthropic": "messages", "openai": "chat"}[judge]
    try:
        server.delay_s = 0.3
        base = server.url if judge == "anthropic" else f"{server.url}/v1"
        cfg = JudgeConfig(judge=judge, base_url=base, api_key_env=KEY_ENV, max_in_flight=1)
        rows = [{"id": str(i), "instruction": f"q{i}", "response": str(i), "answer": str(i)}
                for i in range(16)]
        proc = subprocess.Popen(
            [sys.executable, "-c", SCRIPT, json.dumps(cfg.model_dump(mode="json")),
             str(tmp_path), json.dumps(rows)],
            env={**os.environ}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 120
        while server.counts[route] < 5 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        paid = server.counts[route]
        assert 5 <= paid < len(rows), proc.stderr.read().decode()[-2000:]

        server.delay_s = 0.0
        out = make_judge(cfg, cache=JudgeCache(str(tmp_path))).judge_rows(rows)
        assert [o.verdict for o in out] == ["pass"] * len(rows)
        cached = sum(o.cached for o in out)
        assert cached >= paid - 1  # at most the request in flight at the kill is lost
        assert server.counts[route] == paid + (len(rows) - cached)
    finally:
        server.stop()
