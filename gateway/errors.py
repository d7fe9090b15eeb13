"""The one error type every refusal takes, and the one function that renders it for clients."""

from __future__ import annotations

from dataclasses import dataclass, field

from kubegate import status as k8s_status


@dataclass
class Denial(Exception):
    """A request the gateway refuses. `stage` is filled in by the pipeline that ran it."""

    code: int
    message: str
    reason: str | None = None
    stage: str = ""
    retry_after: int | None = None  # seconds, for 429 and 503
    annotations: dict[str, str] = field(default_factory=dict)  # extra audit annotations

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def to_status(self) -> k8s_status.Status:
        details: k8s_status.StatusDetails | None = None
        if self.retry_after is not None:
            details = {"retryAfterSeconds": self.retry_after}
        return k8s_status.failure(self.code, self.message, reason=self.reason, details=details)

    def headers(self, *, warn: bool = False) -> dict[str, str]:
        """Response headers. `warn` repeats the message as a Warning header, for clients that
        drop Status bodies: client-go reads discovery errors without decoding them, so kubectl
        with a cold discovery cache would otherwise print only "Error from server (...): unknown"."""
        out = {"Content-Type": "application/json", "Cache-Control": "no-store"}
        if self.retry_after is not None:
            out["Retry-After"] = str(self.retry_after)
        if warn:
            text = self.message.encode("ascii", "replace").decode().replace("\\", "\\\\").replace('"', '\\"')
            out["Warning"] = f'299 - "{text}"'
        return out


@dataclass
class Answer(Denial):
    """The gateway answers the request itself (its own API); nothing is forwarded."""

    body: dict[str, object] = field(default_factory=dict)

    def to_status(self) -> k8s_status.Status:
        return self.body  # type: ignore[return-value]


def internal(stage: str, exc: BaseException) -> Denial:
    """What a bug inside the gateway becomes: a 500 that forwards nothing."""
    return Denial(500, f"kubegate: internal error in stage {stage!r} ({type(exc).__name__}); "
                       "the request was not forwarded", "InternalError", stage=stage)
