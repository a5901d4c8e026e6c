"""Streaming text safely: never send what a stop string or an unfinished character may take back."""

from __future__ import annotations

from cogumi_ray.generate.engines.base import cut_at_stop

_PARTIAL = "\ufffd"  # what a byte-level tokenizer decodes half a UTF-8 character to


class DeltaText:
    """Feed the whole decoded answer so far; get back the part that is safe to send now."""

    def __init__(self, stop: list[str]) -> None:
        self.stop = [s for s in stop if s]
        self.sent = ""
        self.stopped = False

    def update(self, text: str) -> str:
        cut, hit = cut_at_stop(text, self.stop)
        if hit:
            self.stopped = True
            return self._send(cut)
        end = len(text) - self._held(text)
        while end > len(self.sent) and text[end - 1] == _PARTIAL:
            end -= 1  # the next token may complete this character
        return self._send(text[:end])

    def finish(self, final: str) -> str:
        """The rest of the final answer (the text the GenResult reports)."""
        return self._send(final)

    def _held(self, text: str) -> int:
        """Length of the longest tail of `text` that a stop string starts with."""
        best = 0
        for s in self.stop:
            for k in range(min(len(s) - 1, len(text)), best, -1):
                if text.endswith(s[:k]):
                    best = k
                    break
        return best

    def _send(self, upto: str) -> str:
        if not upto.startswith(self.sent):  # a tokenizer whose decode is not prefix-stable
            return ""
        delta, self.sent = upto[len(self.sent):], upto
        return delta
