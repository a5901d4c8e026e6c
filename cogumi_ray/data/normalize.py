"""Normalise one input record in any common instruction format to the `Example` schema.

Recognised formats (checked in this order):
- chat: `conversations` (ShareGPT: [{from: human|user, value}, {from: gpt|assistant, value}]) or
  `messages` ([{role, content}]): the first user turn and the assistant turn that follows it;
- native / Alpaca: `instruction` + `response` or `output` (Alpaca's `input`, when present, is
  appended to the instruction after a blank line);
- `prompt` + `response` or `completion`;
- `question` + `answer`.

Top-level `id`, `domain`, `difficulty`, `source` and `metadata` are kept (the task suite stores what
its verifiers need in metadata); any other key lands in metadata so nothing is silently lost.
A record that fits none of this raises `RecordError(reason, detail)`; the reader quarantines it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from cogumi_ray.data.schema import Example

USER_ROLES = frozenset({"human", "user"})
ASSISTANT_ROLES = frozenset({"gpt", "assistant"})
PASSTHROUGH = ("id", "domain", "difficulty", "source", "metadata")
FORMATS_HELP = (
    "conversations (ShareGPT), messages (chat), instruction+response/output (Alpaca), "
    "prompt+response/completion, question+answer"
)


class RecordError(ValueError):
    """A record that cannot become an Example; `reason` is a short code counted in the report."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def content_id(instruction: str, response: str) -> str:
    """Stable id from the content, for inputs without one (same text -> same id on every run)."""
    blob = f"{instruction}\x1f{response}".encode()
    return "ex-" + hashlib.blake2b(blob, digest_size=8).hexdigest()


def _text(record: dict[str, Any], key: str) -> str:
    value = record.get(key)
    if not isinstance(value, str):
        raise RecordError("bad_type", f"field {key!r} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise RecordError("empty_field", f"field {key!r} is empty")
    return value


def _chat_pair(turns: Any, key: str) -> tuple[str, str]:
    if not isinstance(turns, list):
        raise RecordError("bad_type", f"field {key!r} must be a list of turns, got {type(turns).__name__}")
    role_key, text_key = ("from", "value") if key == "conversations" else ("role", "content")
    user: str | None = None
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise RecordError("bad_type", f"{key}[{i}] must be an object, got {type(turn).__name__}")
        role = str(turn.get(role_key, "")).lower()
        if user is None and role in USER_ROLES:
            user = _text(turn, text_key)
        elif user is not None and role in ASSISTANT_ROLES:
            return user, _text(turn, text_key)
    raise RecordError(
        "no_turn_pair",
        f"{key} has no user turn followed by an assistant turn "
        f"(roles seen: {[t.get(role_key) for t in turns][:6]})",
    )


def _pair(record: dict[str, Any]) -> tuple[str, str, set[str]]:
    """(instruction, response, keys consumed) for the first format the record matches."""
    for key in ("conversations", "messages"):
        if key in record:
            return (*_chat_pair(record[key], key), {key})
    if "instruction" in record:
        answer_key = "response" if "response" in record else "output"
        instruction = _text(record, "instruction")
        extra = record.get("input")
        if extra is not None and not isinstance(extra, str):
            raise RecordError("bad_type", f"field 'input' must be a string, got {type(extra).__name__}")
        if extra and extra.strip():
            instruction = f"{instruction}\n\n{extra}"
        return instruction, _text(record, answer_key), {"instruction", "input", answer_key}
    if "prompt" in record:
        answer_key = "completion" if "completion" in record else "response"
        return _text(record, "prompt"), _text(record, answer_key), {"prompt", answer_key}
    if "question" in record:
        return _text(record, "question"), _text(record, "answer"), {"question", "answer"}
    raise RecordError(
        "unknown_format", f"keys {sorted(record)[:12]} match no known format; expected {FORMATS_HELP}"
    )


def _metadata(record: dict[str, Any]) -> dict[str, Any]:
    meta = record.get("metadata")
    if meta is None or meta == "":
        return {}
    if isinstance(meta, str):
        try:
            meta = json.loads(meta)
        except json.JSONDecodeError as e:
            raise RecordError("bad_metadata", f"metadata is not valid JSON ({e.msg})") from None
    if not isinstance(meta, dict):
        raise RecordError("bad_metadata", f"metadata must be an object, got {type(meta).__name__}")
    return dict(meta)


def _label(record: dict[str, Any], key: str, default: str) -> str:
    value = record.get(key)
    if value is None or value == "":
        return default
    if not isinstance(value, str):
        raise RecordError("bad_type", f"field {key!r} must be a string, got {type(value).__name__}")
    return value.strip()


def normalize_record(record: Any, default_source: str) -> Example:
    """Turn a parsed record into an Example, or raise RecordError saying why it cannot be one."""
    if not isinstance(record, dict):
        raise RecordError("not_object", f"expected a JSON object, got {type(record).__name__}")
    instruction, response, consumed = _pair(record)
    meta = _metadata(record)
    for key, value in record.items():
        if key not in consumed and key not in PASSTHROUGH:
            meta.setdefault(key, value)  # unknown columns survive in metadata
    try:
        json.dumps(meta)
    except (TypeError, ValueError):  # Parquet can carry dates/bytes: keep them as text
        meta = json.loads(json.dumps(meta, default=str))
    raw_id = record.get("id")
    if raw_id is None or raw_id == "":
        ex_id = content_id(instruction, response)
    elif isinstance(raw_id, str | int) and not isinstance(raw_id, bool):
        ex_id = str(raw_id)
    else:
        raise RecordError("bad_type", f"field 'id' must be a string or integer, got {type(raw_id).__name__}")
    return Example(
        id=ex_id,
        instruction=instruction,
        response=response,
        domain=_label(record, "domain", "general"),
        difficulty=_label(record, "difficulty", "medium"),
        source=_label(record, "source", default_source),
        metadata=meta,
    )
