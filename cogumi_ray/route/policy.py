"""From probabilities to a decision, and the learned router behind the serve `RoutingPolicy`.

Two rules, both vectorised over rows (the report and the threshold search sweep them):
- `CutPolicy`: the best modifier answers when its probability >= cut, else the base. For cut >=
  0.5 that is the argmax with a confidence cut; lower cuts escalate even where the base is the
  argmax, which the quality/cost sweep needs to reach every share of modifier calls.
- `ProgressivePolicy`: the base starts answering; after each of `steps` generated tokens the
  router scores again (now also seeing the base's confidence so far) and switches to the best
  modifier once it clears that step's threshold; below the last the base finishes. Early steps
  ask for more confidence because a switch there is cheap to be wrong about only if it is rare.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cogumi_ray.serve.protocol import BASE

if TYPE_CHECKING:
    import numpy as np

    from cogumi_ray.route.bundle import RouterBundle
    from cogumi_ray.route.config import MemoryConfig, PolicyConfig
    from cogumi_ray.route.escalation import EscalationDetector
    from cogumi_ray.route.features import SessionState
    from cogumi_ray.route.memory import SessionStore
    from cogumi_ray.serve.protocol import Decision, Messages

NO_SWITCH = -1  # step_tokens of a row the base answers alone
_PENDING = 4096  # progressive turns whose routing state is kept for their re-decisions


@dataclass
class Routing:
    """Per-row decisions: option index, its confidence, tokens the base generated before a switch."""

    option: np.ndarray  # (rows,) int, 0 = base
    confidence: np.ndarray  # (rows,) float
    step_tokens: np.ndarray  # (rows,) int, NO_SWITCH where the base answers alone


def best_modifier(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows,) index (>= 1) and probability of the most likely modifier."""
    import numpy as np

    if probs.shape[1] < 2:
        return np.zeros(len(probs), dtype=np.int64), np.zeros(len(probs))
    m = probs[:, 1:].argmax(axis=1) + 1
    return m, probs[np.arange(len(probs)), m]


@dataclass(frozen=True)
class CutPolicy:
    cut: float

    def route(self, probs: np.ndarray) -> Routing:
        import numpy as np

        m, p = best_modifier(probs)
        switch = (p >= self.cut) & (m > 0)
        option = np.where(switch, m, 0)
        return Routing(option, np.where(switch, p, probs[:, 0]),
                       np.where(switch, 0, NO_SWITCH))


@dataclass(frozen=True)
class ProgressivePolicy:
    steps: tuple[int, ...]
    thresholds: tuple[float, ...]

    def switch_at(self, step: int, probs_row: np.ndarray) -> int | None:
        """The modifier to switch to after step `step` (index into steps), or None."""
        m, p = best_modifier(probs_row[None, :])
        return int(m[0]) if m[0] > 0 and p[0] >= self.thresholds[step] else None

    def route(self, step_probs: list[np.ndarray]) -> Routing:
        """`step_probs[k]`: (rows, options) after steps[k] tokens; one array = the same at every step
        (a router that does not read the generated prefix)."""
        import numpy as np

        if len(step_probs) not in (1, len(self.steps)):
            raise ValueError(f"{len(step_probs)} probability arrays for {len(self.steps)} steps")
        n = len(step_probs[0])
        option = np.zeros(n, dtype=np.int64)
        confidence = step_probs[-1][:, 0].copy()
        tokens = np.full(n, NO_SWITCH)
        undecided = np.ones(n, dtype=bool)
        for k, (steps, threshold) in enumerate(zip(self.steps, self.thresholds, strict=True)):
            probs = step_probs[k if len(step_probs) > 1 else 0]
            m, p = best_modifier(probs)
            hit = undecided & (m > 0) & (p >= threshold)
            option[hit], confidence[hit], tokens[hit] = m[hit], p[hit], steps
            undecided &= ~hit
        return Routing(option, confidence, tokens)


def make_rule(pc: PolicyConfig) -> CutPolicy | ProgressivePolicy:
    if pc.kind == "progressive":
        return ProgressivePolicy(tuple(pc.steps), tuple(pc.thresholds))
    return CutPolicy(pc.cut)


def route_rows(pc: PolicyConfig, probs: np.ndarray | list[np.ndarray]) -> Routing:
    rule = make_rule(pc)
    if isinstance(rule, CutPolicy):
        return rule.route(probs[-1] if isinstance(probs, list) else probs)
    return rule.route(probs if isinstance(probs, list) else [probs])


def routing_cost(r: Routing, costs: np.ndarray, switch_cost_per_token: float) -> np.ndarray:
    """(rows,) cost of each decision: the chosen option's, plus the base tokens a late switch wasted."""
    import numpy as np

    wasted = np.where(r.step_tokens > 0, r.step_tokens, 0) * switch_cost_per_token
    return costs[r.option] + wasted


def last_user_text(messages: Messages) -> str:
    for m in reversed(messages):
        if m.get("role") == "user":
            return str(m.get("content") or "")
    return ""


def session_id(messages: Messages) -> str:
    """A conversation's key: clients resend the whole history, so its opening (system prompt and
    first user message) names the session without any header."""
    import hashlib

    opening = [m.get("content", "") for m in messages if m.get("role") == "system"][:1]
    opening += [m.get("content", "") for m in messages if m.get("role") == "user"][:1]
    return hashlib.sha1("\x1e".join(opening).encode()).hexdigest()[:20]


class LearnedPolicy:
    """The serve `RoutingPolicy` of a trained router.

    `model="cogumi"` asks the router; every other name is handed to `NamePolicy`, so a forced
    `cogumi:<modifier>` or the base's name behaves exactly as with the name policy (and an
    unknown one is the same 404). With a session store, each routed turn is recorded (with the
    request id that answers it, so a rating can find it), the session's state (last option,
    escalation) feeds the features and the escalation rule, and expired sessions are deleted
    every `expire_every_s` of `clock` time.
    """

    def __init__(self, bundle: RouterBundle, base_name: str, modifiers: list[str],
                 detector: EscalationDetector | None = None, memory: SessionStore | None = None,
                 embed_fn: Callable[[list[str]], np.ndarray] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        from cogumi_ray.errors import ConfigError
        from cogumi_ray.serve.policy import NamePolicy

        unserved = [o for o in bundle.options[1:] if o not in modifiers]
        if unserved:
            raise ConfigError(f"the router chooses modifiers {unserved} that are not served "
                              f"(serve.adapters: {sorted(modifiers)}); add them or retrain the router")
        self.names = NamePolicy(base_name, modifiers)
        self.bundle, self.detector, self.memory = bundle, detector, memory
        self.rule = make_rule(bundle.policy)
        self._embed = embed_fn or self._minilm
        # The last query's embedding: a progressive turn scores the same text at every step.
        self._last_embedding: tuple[str, np.ndarray] | None = None
        self._pending: OrderedDict[str, SessionState] = OrderedDict()  # progressive turns in flight
        self._clock = clock
        self._next_expiry = float("-inf")  # the first recorded turn also sweeps old sessions
        self._expiry_lock = threading.Lock()  # decisions run in worker threads
        self.expired = 0  # sessions this policy has expired (tests, operators)

    @classmethod
    def from_dir(cls, path: str, base_name: str, modifiers: list[str],
                 memory_path: str | None = None,
                 memory_cfg: MemoryConfig | None = None) -> LearnedPolicy:
        """The router saved by the router stage (`<run>/router/router`), its escalation detector
        when saved beside it, and a session store at `memory_path` (None = no memory) kept as
        `memory_cfg` says (None = MemoryConfig's defaults)."""
        import os

        from cogumi_ray.route.bundle import RouterBundle
        from cogumi_ray.route.escalation import EscalationDetector
        from cogumi_ray.route.memory import SessionStore

        esc = os.path.join(path, "escalation")
        return cls(RouterBundle.load(path), base_name, modifiers,
                   EscalationDetector.load(esc) if os.path.isdir(esc) else None,
                   SessionStore(memory_path, memory_cfg) if memory_path else None)

    def warm(self) -> None:
        """Load the embedding model now (seconds on CPU) rather than on the first routed request:
        the Router replica calls it while it starts, so Serve reports it ready once it is."""
        self._embed(["warm-up"])

    def _minilm(self, texts: list[str]) -> np.ndarray:
        from cogumi_ray.route.features import embed

        return embed(texts, self.bundle.features)

    def models(self) -> list[str]:
        return self.names.models()

    def decide(self, messages: Messages, requested_model: str,
               request_id: str | None = None) -> Decision:
        """`RoutingPolicy.decide`; `request_id` (the answer's x-request-id) is kept with the turn."""
        from cogumi_ray.serve.policy import ROUTED

        if requested_model != ROUTED:
            decision = self.names.decide(messages, requested_model)
            if self.memory is not None:  # a forced option is still the session's last option
                self._record(messages, decision.option, None,
                             self.session_state(messages).escalated, request_id)
            return decision
        return self.route(messages, request_id=request_id)

    def likely_option(self, messages: Messages) -> str | None:
        """The option this conversation's session has most needed so far (None = no memory or
        no history): what a replica may load before the session asks for it again."""
        if self.memory is None:
            return None
        return self.memory.likely_option(session_id(messages))

    def _record(self, messages: Messages, option: str, confidence: float | None, escalated: bool,
                request_id: str | None) -> None:
        assert self.memory is not None
        now = self._clock()
        self.memory.record(session_id(messages), option, confidence, escalated,
                           last_user_text(messages), now=now, request_id=request_id)
        self._expire_if_due(now)

    def _expire_if_due(self, now: float) -> None:
        # Serving is the only writer that runs for weeks, so it also deletes what ttl_s outlived;
        # one thread of the replica sweeps per interval, the others go on routing.
        assert self.memory is not None
        with self._expiry_lock:
            if now < self._next_expiry:
                return
            self._next_expiry = now + self.memory.cfg.expire_every_s
        self.expired += self.memory.expire(now)

    def session_state(self, messages: Messages) -> SessionState:
        from cogumi_ray.route.features import SessionState

        followup = any(m.get("role") == "assistant" for m in messages)
        escalated = bool(followup and self.detector is not None
                         and self.detector.is_escalation(last_user_text(messages)))
        if self.memory is not None:
            past = self.memory.state(session_id(messages))
            return SessionState(past.last_option, escalated, past.turns)
        turns = sum(m.get("role") == "user" for m in messages) - 1
        return SessionState(None, escalated, max(turns, 0))

    def probs(self, messages: Messages, state: SessionState,
              extras: np.ndarray | None = None) -> np.ndarray:
        """(options,) calibrated probabilities for the conversation's last user message."""
        text = last_user_text(messages)
        last = self._last_embedding  # one read: another thread may replace it meanwhile
        if last is None or last[0] != text:
            last = self._last_embedding = (text, self._embed([text]))
        return self.bundle.probs_from_embeddings(last[1], extras, [state])[0]

    @property
    def reads_confidence(self) -> bool:
        """Trained with the base's calibrated confidence (route.confidence) as its last extra."""
        return self.bundle.features.base_confidence == "on"

    def confidence_extras(self, confidence: float | None) -> np.ndarray | None:
        """`extras` for `progress`: the base's confidence where the router stage put it (the last
        extra column), the other extras at their training mean (unknown when serving); None =
        not known (every extra at its training mean)."""
        if confidence is None or not self.reads_confidence:
            return None
        from cogumi_ray.route.confidence import confidence_at

        mean = self.bundle.featurizer.extra_mean
        return confidence_at(mean[None, :].astype("float64"), float(confidence))

    def route(self, messages: Messages, extras: np.ndarray | None = None,
              request_id: str | None = None) -> Decision:
        state = self.session_state(messages)
        probs = self.probs(messages, state, extras)
        m, p = best_modifier(probs[None, :])
        option, confidence = 0, float(probs[0])  # progressive: the base starts answering
        if isinstance(self.rule, CutPolicy) and m[0] > 0 and p[0] >= self.rule.cut:
            option, confidence = int(m[0]), float(p[0])
        # A dissatisfied follow-up to a base answer (unknown without memory: usually the base)
        # goes to the best modifier: answering it with the base again repeats the failure.
        if (state.escalated and state.last_option in (None, BASE) and m[0] > 0
                and p[0] >= self.bundle.policy.escalation_cut):
            option, confidence = int(m[0]), float(p[0])
        if isinstance(self.rule, ProgressivePolicy):
            self._pending[session_id(messages)] = state
            while len(self._pending) > _PENDING:
                self._pending.popitem(last=False)
        return self._decided(messages, option, confidence, state, request_id=request_id)

    def progress(self, messages: Messages, step: int, extras: np.ndarray | None = None) -> Decision | None:
        """Progressive policy, after `steps[step]` base tokens: the modifier to switch to, or None.
        `extras` carries the features known by then (e.g. the base's confidence so far)."""
        if not isinstance(self.rule, ProgressivePolicy):
            return None
        sid = session_id(messages)
        # The state this turn was routed with (memory now holds the turn itself).
        state = self._pending.get(sid) or self.session_state(messages)
        probs = self.probs(messages, state, extras)
        option = self.rule.switch_at(step, probs)
        if option is None:
            return None
        return self._decided(messages, option, float(probs[option]), state, revise=True)

    def _decided(self, messages: Messages, option: int, confidence: float,
                 state: SessionState, revise: bool = False,
                 request_id: str | None = None) -> Decision:
        from cogumi_ray.serve.policy import modifier_id
        from cogumi_ray.serve.protocol import Decision

        name = self.bundle.options[option]
        if self.memory is not None and revise:  # a progressive switch re-decides the same turn
            self.memory.revise_last(session_id(messages), name, confidence)
        elif self.memory is not None:
            self._record(messages, name, confidence, state.escalated, request_id)
        model = self.names.base_name if name == BASE else modifier_id(name)
        return Decision(name, confidence, model)
