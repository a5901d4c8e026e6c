"""The chat UI (`serve/ui.py`) driven in a real headless Chromium, and `POST /v1/feedback`.

Three layers: the feedback endpoint in-process (TestClient); the UI over the real HTTP API on a
fake upstream (fast: streaming, history, thumbs reaching the store); and the UI over the whole
Serve graph on the tiny GGUF (slow: answers equal the model's own greedy answers).
"""

from __future__ import annotations

import asyncio
import inspect
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from cogumi_ray.generate.config import GenParams, LlamaCppEngineConfig
from cogumi_ray.serve.api import build_api
from cogumi_ray.serve.config import DeploymentConfig, LimitsConfig, RateLimitConfig, ServeConfig
from cogumi_ray.serve.errors import ServeError
from cogumi_ray.serve.feedback import FeedbackRecord, FeedbackRequest, RingBufferFeedbackStore
from cogumi_ray.serve.limits import key_digest
from cogumi_ray.serve.policy import NamePolicy
from cogumi_ray.serve.protocol import Decision, GenerationRequest, GenResult, Piece, Routed

KEY = "sk-ui"
AUTH = {"Authorization": f"Bearer {KEY}"}
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
BOT = "#cogumi-chat [data-testid='bot']"
WAIT_MS = 90_000  # a shared 2-core box: Serve's first answers can take a while
FAIL = "please fail"  # the echo upstream refuses this message (HTTP 400)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EchoUpstream:
    """The name policy over an 'echo' model that streams one word every `delay` seconds."""

    def __init__(self, delay: float = 0.15) -> None:
        self.policy = NamePolicy("tiny", ["code"])
        self.delay = delay
        self.seen: list[GenerationRequest] = []

    @staticmethod
    def answer(messages: list[dict[str, str]]) -> str:
        return f"echo {len(messages)} {messages[-1]['content']}"

    async def models(self) -> list[str]:
        return self.policy.models()

    async def complete(self, req: GenerationRequest) -> Routed:
        raise NotImplementedError("the UI only streams")

    async def stream(self, req: GenerationRequest) -> AsyncIterator[Decision | Piece]:
        assert isinstance(req.prompt, list)
        self.seen.append(req)
        yield self.policy.decide(req.prompt, req.model)
        if req.prompt[-1]["content"] == FAIL:
            raise ServeError(400, "this prompt is refused", code="invalid_value")
        text = self.answer(req.prompt)
        for j, word in enumerate(text.split()):
            await asyncio.sleep(self.delay)
            yield Piece(0, text=word if j == 0 else " " + word)
        yield Piece(0, done=GenResult(text, "stop", 3, len(text.split())))


# ---- POST /v1/feedback, in-process -----------------------------------------------------------


@pytest.fixture()
def store() -> RingBufferFeedbackStore:
    return RingBufferFeedbackStore(capacity=3)


@pytest.fixture()
def api(store) -> TestClient:
    return TestClient(build_api(ServeConfig(), EchoUpstream(), frozenset({key_digest(KEY)}),
                                feedback=store))


def test_feedback_stored_and_receipt(api, store):
    r = api.post("/v1/feedback", headers=AUTH,
                 json={"request_id": "chatcmpl-abc123", "rating": "up", "comment": "spot on"})
    assert r.status_code == 200, r.text
    receipt = r.json()
    assert receipt["object"] == "feedback" and receipt["id"].startswith("fb-")
    assert receipt["request_id"] == "abc123"  # the answer's id and its x-request-id name one request
    [rec] = store.recent()
    assert (rec.id, rec.request_id, rec.session_id, rec.rating, rec.comment) == (
        receipt["id"], "abc123", None, "up", "spot on")
    r = api.post("/v1/feedback", headers=AUTH, json={"session_id": "s1", "rating": "down"})
    assert r.status_code == 200 and store.recent(1)[0].session_id == "s1"


@pytest.mark.parametrize("body,param", [
    ({"rating": "up"}, None),  # names neither an answer nor a session
    ({"request_id": "r1", "rating": "meh"}, "rating"),
    ({"request_id": "r1"}, "rating"),
    ({"request_id": "r1", "rating": "up", "stars": 5}, "stars"),
    ({"request_id": "r1", "rating": "up", "comment": "x" * 2001}, "comment"),
    ({"request_id": "", "rating": "up"}, "request_id"),
])
def test_feedback_validated(api, store, body, param):
    r = api.post("/v1/feedback", headers=AUTH, json=body)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["param"] == param
    assert store.recent() == []


def test_feedback_needs_the_key(api, store):
    r = api.post("/v1/feedback", json={"request_id": "r1", "rating": "up"})
    assert r.status_code == 401 and store.recent() == []


def test_ring_buffer_keeps_the_last(store):
    for i in range(5):
        body = FeedbackRequest(request_id=f"r{i}", rating="up")
        asyncio.run(store.add(FeedbackRecord.from_request(body)))
    assert [r.request_id for r in store.recent()] == ["r2", "r3", "r4"]
    assert [r.request_id for r in store.recent(2)] == ["r3", "r4"]


# ---- the UI in Chromium ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    pytest.importorskip("gradio", reason="the UI needs Gradio: pip install 'cogumi-ray[ui]'")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="pip install playwright (no `playwright install`: the tests "
        "drive Debian's chromium)")
    if not os.path.isfile(CHROMIUM):
        pytest.skip("install Debian's chromium: apt-get install -y chromium")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def _ui(base_url: str, api_key: str, max_tokens: int) -> Any:
    from cogumi_ray.serve.ui import launch_ui

    # Greedy, so what the browser shows can be compared with the model's own answer.
    return launch_ui(base_url, api_key, port=_free_port(), block=False, temperature=0.0,
                     max_tokens=max_tokens)


def _open(browser: Any, url: str) -> Any:
    page = browser.new_page(viewport={"width": 1100, "height": 1000})
    page.goto(url)
    # The options come from GET /v1/models on page load, and that answer resets the pick: wait
    # until more than the built-in 'cogumi (routed)' is offered (every upstream here has more).
    from playwright.sync_api import expect

    page.locator("#cogumi-model input").click()
    page.get_by_role("option", name="cogumi (routed)", exact=True).wait_for(timeout=WAIT_MS)
    expect(page.get_by_role("option")).not_to_have_count(1, timeout=WAIT_MS)
    page.keyboard.press("Escape")
    # Every value a bot bubble takes, so a test can tell a streamed answer from one set at once.
    page.evaluate("""() => {
        window.__seen = [];
        new MutationObserver(() => {
            for (const el of document.querySelectorAll("#cogumi-chat [data-testid='bot']")) {
                const v = el.getAttribute("aria-label");
                if (window.__seen[window.__seen.length - 1] !== v) window.__seen.push(v);
            }
        }).observe(document.querySelector("#cogumi-chat"),
                   {subtree: true, childList: true, attributes: true, characterData: true});
    }""")
    return page


def _ask(page: Any, option: str, text: str) -> None:
    from playwright.sync_api import expect

    # Typing filters Gradio's dropdown to the one match; the dropdown picks an option on its
    # mousedown (a click on its animated list misses at times, and Enter does nothing until the
    # filter has marked the match active). The pick is checked after a blur, which reverts a
    # pick that did not take, and made again if needed.
    combo = page.locator("#cogumi-model input")
    for _ in range(5):
        combo.fill(option)
        match = page.get_by_role("option", name=option, exact=True)
        match.wait_for(timeout=WAIT_MS)
        match.dispatch_event("mousedown")
        combo.blur()
        page.wait_for_timeout(200)
        if combo.input_value() == option:
            break
    expect(combo).to_have_value(option)
    page.fill("#cogumi-input textarea", text)
    page.click("#cogumi-send")


def _bubble_reads(page: Any, bubble: int, want: str) -> None:
    from playwright.sync_api import expect

    # The bubble's aria-label holds the raw message (its body is rendered markdown), after
    # Gradio's inspect.cleandoc of the text.
    expect(page.locator(BOT).nth(bubble)).to_have_attribute(
        "aria-label", "bot's message: " + inspect.cleandoc(want), timeout=WAIT_MS)


def _answer_done(page: Any, turn: int, want: str, bubble: int | None = None) -> dict[str, str]:
    """Wait for answer `turn` (1-based; its bot bubble's index unless given) to read `want` and
    finish; its row of the routing table."""
    from playwright.sync_api import expect

    _bubble_reads(page, turn - 1 if bubble is None else bubble, want)
    row = page.locator("#cogumi-routing tbody tr").nth(turn - 1)
    expect(row.locator("td").nth(5)).not_to_have_text("streaming…", timeout=WAIT_MS)
    cells = row.locator("td").all_inner_texts()
    keys = ["turn", "asked", "answered", "confidence", "model", "finish", "request"]
    return dict(zip(keys, (c.strip() for c in cells), strict=True))


def _thumb(page: Any, turn: int, like: bool, request_id: str, comment: str = "") -> str:
    """Click answer `turn`'s thumb; the status line once it shows the server's receipt."""
    from playwright.sync_api import expect

    if comment:
        page.fill("#cogumi-comment textarea", comment)
    label, emoji = ("Like", "👍") if like else ("Dislike", "👎")
    page.locator(f"#cogumi-chat button[aria-label='{label}']").nth(turn - 1).click()
    status = page.locator("#cogumi-feedback")
    expect(status).to_contain_text(f"{emoji} {'up' if like else 'down'}: recorded as fb-",
                                   timeout=WAIT_MS)
    expect(status).to_contain_text(f"for answer #{turn} (request {request_id})", timeout=WAIT_MS)
    return status.inner_text()


@pytest.fixture()
def echo_api() -> Iterator[tuple[str, EchoUpstream, RingBufferFeedbackStore]]:
    """The real HTTP API (Gate, SSE, /v1/feedback) on uvicorn, over the echo upstream."""
    import uvicorn

    upstream, store = EchoUpstream(), RingBufferFeedbackStore()
    app = build_api(ServeConfig(), upstream, frozenset({key_digest(KEY)}), feedback=store)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}/v1", upstream, store
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_ui_streams_keeps_history_and_sends_feedback(browser, echo_api):
    base_url, upstream, store = echo_api
    demo = _ui(base_url, KEY, max_tokens=32)
    try:
        page = _open(browser, demo.local_url)
        _ask(page, "cogumi:code", "hello there")
        first = _answer_done(page, 1, "echo 1 hello there")
        assert (first["asked"], first["answered"], first["model"]) == (
            "cogumi:code", "code (forced)", "cogumi:code")
        assert first["confidence"] == "n/a" and first["finish"] == "stop"
        seen = [s.removeprefix("bot's message: ") for s in page.evaluate("window.__seen")]
        partial = [s for s in seen if s and s != "echo 1 hello there"]
        assert partial and all("echo 1 hello there".startswith(s) for s in partial), seen

        _ask(page, "cogumi (routed)", "and again")
        second = _answer_done(page, 2, "echo 3 and again")  # three messages: the history was sent
        assert second["answered"] == "base (routed)" and second["model"] == "tiny"
        assert upstream.seen[1].prompt == [
            {"role": "user", "content": "hello there"},
            {"role": "assistant", "content": "echo 1 hello there"},
            {"role": "user", "content": "and again"}]
        assert upstream.seen[1].params.temperature == 0.0

        text = _thumb(page, 1, like=False, request_id=first["request"], comment="wrong modifier")
        down = store.recent()[-1]
        assert (down.request_id, down.rating, down.comment) == (first["request"], "down",
                                                                "wrong modifier")
        assert down.session_id and down.id in text
        assert page.input_value("#cogumi-comment textarea") == ""  # a comment goes with one thumb
        _thumb(page, 2, like=True, request_id=second["request"])
        up = store.recent()[-1]
        assert (up.request_id, up.rating, up.session_id) == (second["request"], "up",
                                                             down.session_id)

        # A refused turn shows the server's message, keeps the text to retry, and stays out of
        # the history that the next turn sends.
        _ask(page, "cogumi:code", FAIL)
        _bubble_reads(page, 2, "⚠️ this prompt is refused")
        assert page.input_value("#cogumi-input textarea") == FAIL
        _ask(page, "cogumi:code", "last one")
        _answer_done(page, 3, "echo 5 last one", bubble=3)
        assert [m["content"] for m in upstream.seen[-1].prompt][-2:] == ["echo 3 and again",
                                                                           "last one"]
    finally:
        demo.close()


# ---- the UI over the whole Serve graph on the tiny GGUF ----------------------------------------

QUESTION = "What is 48 + 17? Answer with the number only."
FOLLOW_UP = "And 48 - 17?"
MAX_TOKENS = 12


@pytest.fixture(scope="module")
def serve_cfg(serve_gguf, lora_ggufs) -> ServeConfig:
    return ServeConfig(
        base=serve_gguf, adapters=lora_ggufs, port=_free_port(), api_keys=[KEY],
        rate_limit=RateLimitConfig(requests_per_minute=600, burst=60),
        limits=LimitsConfig(max_tokens=64, default_max_tokens=16),
        llama_cpp=LlamaCppEngineConfig(n_ctx=512, n_threads=1),
        generator=DeploymentConfig(num_cpus=1, max_ongoing_requests=8),
    )


@pytest.fixture(scope="module")
def serve_url(ray_session, serve_cfg) -> Iterator[str]:
    pytest.importorskip("llama_cpp")
    from ray import serve

    from cogumi_ray.serve.app import build_app

    serve.start(http_options={"host": "127.0.0.1", "port": serve_cfg.port})
    try:
        serve.run(build_app(serve_cfg), name=serve_cfg.app_name, route_prefix="/")
        yield f"http://127.0.0.1:{serve_cfg.port}/v1"
    finally:
        serve.shutdown()


@pytest.mark.slow
def test_ui_over_serve_matches_the_model(browser, serve_cfg, serve_url):
    from cogumi_ray.serve.backends.llama_cpp import LlamaCppGenerator

    demo = _ui(serve_url, KEY, max_tokens=MAX_TOKENS)
    try:
        page = _open(browser, demo.local_url)
        _ask(page, "cogumi:math", QUESTION)
        # The same GGUF + adapter without Serve, greedy (computed while the UI streams).
        gen = LlamaCppGenerator(serve_cfg)
        params = GenParams(max_new_tokens=MAX_TOKENS)
        try:
            turn1 = [{"role": "user", "content": QUESTION}]
            want1 = gen.generate(turn1, params, "math")
            turn2 = [*turn1, {"role": "assistant", "content": want1.text},
                     {"role": "user", "content": FOLLOW_UP}]
            want2 = gen.generate(turn2, params, None)
        finally:
            gen.close()
        assert want1.text.strip() and want2.text.strip()  # an empty bubble would prove nothing
        first = _answer_done(page, 1, want1.text)
        assert first["answered"] == "math (forced)" and first["model"] == "cogumi:math"
        assert first["finish"] == want1.finish_reason and first["confidence"] == "n/a"

        _ask(page, "cogumi (routed)", FOLLOW_UP)
        second = _answer_done(page, 2, want2.text)  # equal only if the history went along
        assert second["answered"] == "base (routed)" and second["model"] == "tiny-sft"
        assert first["request"] != second["request"]

        _thumb(page, 1, like=True, request_id=first["request"])  # the receipt came from /v1/feedback
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "chat-ui.png"), full_page=True)
    finally:
        demo.close()


def test_mount_ui_on_the_api():
    """mount_ui puts the UI beside /v1 in one FastAPI app; the Gate still guards /v1 alone."""
    pytest.importorskip("gradio", reason="the UI needs Gradio: pip install 'cogumi-ray[ui]'")
    from cogumi_ray.serve.ui import mount_ui

    app = build_api(ServeConfig(), EchoUpstream(), frozenset({key_digest(KEY)}))
    with TestClient(mount_ui(app, "http://127.0.0.1:9/v1", KEY)) as client:
        page = client.get("/ui/")
        assert page.status_code == 200 and "gradio" in page.text.lower()
        assert client.get("/v1/models").status_code == 401


def test_launch_ui_returns_and_closes():
    """launch_ui(block=False) returns a running app; close() frees its port."""
    pytest.importorskip("gradio", reason="the UI needs Gradio: pip install 'cogumi-ray[ui]'")
    import httpx

    from cogumi_ray.serve.ui import launch_ui

    port = _free_port()
    demo = launch_ui("http://127.0.0.1:9/v1", "none", port=port, block=False)
    assert httpx.get(demo.local_url, timeout=30).status_code == 200
    demo.close()
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
