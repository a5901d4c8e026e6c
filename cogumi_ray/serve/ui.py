"""A chat UI (Gradio) over the OpenAI-compatible endpoint: what a person sees of `cogumi serve`.

It is a client like any other, the official `openai` SDK against `base_url`, so it runs beside
the Serve app on its own port (`launch_ui`), on another machine, or mounted into a FastAPI app
(`mount_ui`). Per answer it shows which option answered (the `x-cogumi-option` and
`x-cogumi-confidence` headers, else the `cogumi` field of the stream's chunks), and its thumbs
post to `/v1/feedback` with the answer's request id.

    python -m cogumi_ray.serve.ui --base-url http://127.0.0.1:8000/v1 --port 7860
"""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Iterator
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from cogumi_ray.serve.client import API_KEY_ENV, BASE_URL_ENV, DEFAULT_BASE_URL, ChatClient, Routing
from cogumi_ray.serve.policy import ROUTED  # the model id that lets the router choose

if TYPE_CHECKING:
    import gradio as gr
    from fastapi import FastAPI

EMPTY_ANSWER = "*(empty answer)*"


def _gradio() -> Any:
    try:
        import gradio
    except ImportError as e:
        from cogumi_ray.errors import MissingDependencyError

        raise MissingDependencyError("gradio (the chat UI)", "pip install 'cogumi-ray[ui]'",
                                     str(e)) from e
    return gradio


# ---- the Gradio app ---------------------------------------------------------------------------
# Per browser session the UI keeps three lists in gr.State: `history`, the clean OpenAI messages
# sent each turn; `display`, what the Chatbot shows (also error bubbles, which are not history);
# and `answers`, one entry per answer with its display index and Routing, for the per-answer
# routing table and for mapping a thumb click back to a request id.


def build_ui(base_url: str | None = None, api_key: str | None = None, *, temperature: float = 0.7,
             max_tokens: int = 256, title: str = "cogumi") -> gr.Blocks:
    """The chat app over base_url (e.g. http://127.0.0.1:8000/v1); models load on page open."""
    import openai

    gr = _gradio()

    api = ChatClient(base_url, api_key)

    def model_choices(current: str | None = None) -> Any:
        try:
            ids = api.models()
        except openai.APIError as e:
            gr.Warning(f"GET /v1/models failed ({e}); only '{ROUTED}' is offered.")
            ids = [ROUTED]
        labels = [(f"{i} (routed)" if i == ROUTED else i, i) for i in ids]
        # A pick made while the list loaded (or before a refresh) stands if it is still offered.
        return gr.Dropdown(choices=labels, value=current if current in ids else ROUTED)

    def on_load(current: str | None) -> tuple[str, Any]:
        return uuid.uuid4().hex, model_choices(current)

    def respond(message: str, model: str, temp: float, max_new: float, display: list[dict[str, str]],
                history: list[dict[str, str]], answers: list[dict[str, Any]]) -> Iterator[tuple]:
        if not message.strip():
            yield message, display, display, history, answers, _routing_table(answers)
            return
        turn = [*history, {"role": "user", "content": message}]
        shown = [*display, {"role": "user", "content": message}, {"role": "assistant", "content": ""}]
        answer_index = len(shown) - 1
        yield "", shown, shown, history, answers, _routing_table(answers)
        text, routing, finish = "", None, None
        try:
            for text, routing, finish in api.stream(model or ROUTED, turn, temperature=float(temp),
                                                    max_tokens=int(max_new)):
                shown[answer_index] = {"role": "assistant", "content": text}
                now = answers if routing is None else [*answers, _answer(answer_index, model,
                                                                         routing, finish)]
                yield "", shown, shown, history, answers, _routing_table(now)
        except openai.APIError as e:
            # The failed turn is shown but left out of the history the next turn sends.
            shown[answer_index] = {"role": "assistant", "content": f"⚠️ {_error_text(e)}"}
            yield message, shown, shown, history, answers, _routing_table(answers)
            return
        done = [*answers, _answer(answer_index, model, routing, finish)] if routing else answers
        history = [*turn, {"role": "assistant", "content": text}]
        if not text.strip():  # an empty bubble reads as a broken UI; the history keeps the truth
            shown[answer_index] = {"role": "assistant", "content": EMPTY_ANSWER}
        yield "", shown, shown, history, done, _routing_table(done)

    def on_like(data: gr.LikeData, answers: list[dict[str, Any]], session: str,
                comment: str) -> tuple[str, str]:
        # True/False for the thumbs; a string would be a custom feedback option (none offered).
        rating = ("up" if data.liked else "down") if isinstance(data.liked, bool) else None
        hit = next((a for a in answers if a["index"] == data.index), None)
        if rating is None:
            return f"Not a rating: {data.liked!r}.", comment
        if hit is None:
            return "Only answers the server gave can be rated.", comment
        try:
            receipt = api.feedback(rating, request_id=hit["request_id"], session_id=session or None,
                                   comment=comment.strip() or None)
        except openai.APIError as e:
            return f"⚠️ feedback not recorded: {_error_text(e)}", comment
        thumb = "👍" if rating == "up" else "👎"
        return (f"{thumb} {rating}: recorded as `{receipt.get('id')}` for answer #{hit['turn']} "
                f"(request `{receipt.get('request_id')}`)", "")

    # Gradio finds the LikeData parameter by its type hint; this module's hints are strings that
    # name a module imported only here, so give it the class itself.
    on_like.__annotations__["data"] = gr.LikeData

    def clear() -> tuple:
        return [], [], [], [], _routing_table([]), ""

    with gr.Blocks(title=title, analytics_enabled=False) as demo:
        session = gr.State("")
        history: gr.State = gr.State([])
        display: gr.State = gr.State([])
        answers: gr.State = gr.State([])
        gr.Markdown(f"## {title}\nAsk anything: `{ROUTED}` lets the router pick the modifier; "
                    "pick one below to force it. Rate answers with the thumbs on each bubble.")
        with gr.Row():
            model = gr.Dropdown(choices=[(f"{ROUTED} (routed)", ROUTED)], value=ROUTED,
                                label="Answered by", elem_id="cogumi-model", scale=4)
            refresh = gr.Button("↻ Models", elem_id="cogumi-refresh", scale=1)
        chatbot = gr.Chatbot(label="Chat", elem_id="cogumi-chat", height=420,
                             feedback_options=("Like", "Dislike"))
        with gr.Row():
            msg = gr.Textbox(placeholder="Type a message and press Enter", show_label=False,
                             elem_id="cogumi-input", scale=6, autofocus=True)
            send = gr.Button("Send", variant="primary", elem_id="cogumi-send", scale=1)
            clear_btn = gr.Button("Clear", elem_id="cogumi-clear", scale=1)
        routing = gr.Markdown(_routing_table([]), elem_id="cogumi-routing")
        comment = gr.Textbox(label="Comment sent with your next rating (optional)",
                             elem_id="cogumi-comment")
        feedback_status = gr.Markdown(elem_id="cogumi-feedback")
        with gr.Accordion("Sampling", open=False):
            temp = gr.Slider(0.0, 2.0, value=temperature, step=0.05, label="temperature",
                             elem_id="cogumi-temperature")
            max_new = gr.Slider(1, 1024, value=max_tokens, step=1, label="max_tokens",
                                elem_id="cogumi-max-tokens")

        demo.load(on_load, inputs=model, outputs=[session, model])
        refresh.click(model_choices, inputs=model, outputs=model)
        chat_io = dict(fn=respond, inputs=[msg, model, temp, max_new, display, history, answers],
                       outputs=[msg, chatbot, display, history, answers, routing])
        msg.submit(**chat_io)  # type: ignore[arg-type]
        send.click(**chat_io)  # type: ignore[arg-type]
        chatbot.like(on_like, inputs=[answers, session, comment], outputs=[feedback_status, comment])
        cleared = [chatbot, display, history, answers, routing, feedback_status]
        clear_btn.click(clear, outputs=cleared)
        chatbot.clear(clear, outputs=cleared)  # the Chatbot's own bin icon: forget the history too
    return demo


def _answer(index: int, requested: str, routing: Routing, finish: str | None) -> dict[str, Any]:
    # Display index -> request id is what a thumb click needs; the rest is for the table.
    return {"index": index, "turn": index // 2 + 1, "requested": requested or ROUTED,
            "finish": finish, **asdict(routing)}


def _routing_table(answers: list[dict[str, Any]]) -> str:
    if not answers:
        return "_Routing: each answer's option and confidence appear here._"
    rows = ["| # | asked for | answered by | confidence | model | finish | request |",
            "|---|---|---|---|---|---|---|"]
    for a in answers:
        conf = "n/a" if a["confidence"] is None else f"{a['confidence']:.2f}"
        how = "routed" if a["requested"] == ROUTED else "forced"
        rows.append(f"| {a['turn']} | {a['requested']} | **{a['option']}** ({how}) | {conf} | "
                    f"{a['model']} | {a['finish'] or 'streaming…'} | `{a['request_id']}` |")
    return "\n".join(rows)


def _error_text(e: Exception) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    return str(e)


def launch_ui(base_url: str | None = None, api_key: str | None = None, *, host: str = "127.0.0.1",
              port: int = 7860, block: bool = True, temperature: float = 0.7,
              max_tokens: int = 256) -> gr.Blocks:
    """Serve the UI on its own port (beside the Serve app). With block=False it returns at once,
    running: its address is `.local_url`, `.close()` stops it."""
    demo = build_ui(base_url, api_key, temperature=temperature, max_tokens=max_tokens)
    # No SSR: it spawns a Node server; plain client rendering needs nothing beyond Python.
    demo.queue(default_concurrency_limit=8).launch(
        server_name=host, server_port=port, prevent_thread_lock=not block, ssr_mode=False,
        quiet=True, footer_links=[])
    return demo


def mount_ui(app: FastAPI, base_url: str | None = None, api_key: str | None = None, *,
             path: str = "/ui") -> FastAPI:
    """Mount the UI on an existing FastAPI app at `path`.

    Mind two things before doing this on the Serve ingress: the API key lives in the UI process,
    so everyone who reaches `path` chats unauthenticated (the Gate guards /v1 only); and Gradio
    keeps queue state in process, so with more than one ingress replica a browser's requests
    must stick to one replica.
    """
    return _gradio().mount_gradio_app(app, build_ui(base_url, api_key), path=path, ssr_mode=False,
                               footer_links=[])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cogumi_ray.serve.ui",
                                description="Chat UI for a running `cogumi serve` endpoint.")
    p.add_argument("--base-url", default=None,
                   help=f"the /v1 URL (default: ${BASE_URL_ENV} or {DEFAULT_BASE_URL})")
    p.add_argument("--api-key", default=None, help=f"bearer key (default: ${API_KEY_ENV})")
    p.add_argument("--host", default="127.0.0.1", help="address the UI listens on")
    p.add_argument("--port", type=int, default=7860, help="the UI's port")
    args = p.parse_args(argv)
    launch_ui(args.base_url, args.api_key, host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
