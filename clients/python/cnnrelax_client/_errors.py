"""The one exception family of the client, carrying RFC 9457 problem details."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from ._models import Experiment, Job

__all__ = [
    "CnnrelaxError",
    "CnnrelaxConnectionError",
    "CnnrelaxTimeoutError",
    "JobFailedError",
]


class CnnrelaxError(Exception):
    """Any failure reported by the service or met on the way to it.

    The attributes mirror an RFC 9457 problem document: ``status`` (the HTTP status code, ``None``
    when no response was received), ``title``, ``detail`` (a sentence a person understands), ``type``
    (a URI, ``"about:blank"`` when the server gave none) and ``instance``. Any extension members of the
    problem document are kept in ``extensions`` (for example ``errors`` or ``retry_after``).
    """

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        title: str | None = None,
        type: str = "about:blank",
        instance: str | None = None,
        extensions: dict[str, Any] | None = None,
    ) -> None:
        self.status = status
        self.title = title or ("Error" if status is None else f"HTTP {status}")
        self.detail = detail
        self.type = type
        self.instance = instance
        self.extensions: dict[str, Any] = dict(extensions or {})
        super().__init__(detail)

    def __str__(self) -> str:
        prefix = f"{self.status} {self.title}" if self.status is not None else self.title
        return f"{prefix}: {self.detail}"

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(status={self.status!r}, title={self.title!r}, "
                f"detail={self.detail!r}, type={self.type!r})")

    @property
    def problem(self) -> dict[str, Any]:
        """The problem details as a dict, in RFC 9457 member names."""
        out: dict[str, Any] = {"type": self.type, "title": self.title, "status": self.status,
                               "detail": self.detail}
        if self.instance is not None:
            out["instance"] = self.instance
        out.update(self.extensions)
        return out

    @classmethod
    def from_response(cls, response: httpx.Response) -> CnnrelaxError:
        """Build the error from an HTTP error response, problem+json or not."""
        body: Any = None
        try:
            body = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
            body = None
        reason = response.reason_phrase or "Error"
        if isinstance(body, dict) and ("detail" in body or "title" in body):
            known = {"type", "title", "status", "detail", "instance"}
            detail = body.get("detail")
            if not isinstance(detail, str):
                # FastAPI's default shape is {"detail": [...]} or {"detail": {...}}: keep it readable.
                detail = json.dumps(detail) if detail is not None else str(body.get("title") or reason)
            return cls(
                detail,
                status=response.status_code,
                title=str(body.get("title") or reason),
                type=str(body.get("type") or "about:blank"),
                instance=body.get("instance"),
                extensions={k: v for k, v in body.items() if k not in known},
            )
        text = response.text.strip()[:500] if response.content else ""
        return cls(text or reason, status=response.status_code, title=reason)


class CnnrelaxConnectionError(CnnrelaxError):
    """The service could not be reached (refused connection, DNS, reset, transport timeout)."""


class CnnrelaxTimeoutError(CnnrelaxError):
    """A client-side wait ran out before the job or experiment finished (the job keeps running)."""


class JobFailedError(CnnrelaxError):
    """A job or experiment ended ``failed`` or ``cancelled`` where a result was expected.

    ``job`` holds the final snapshot (a :class:`Job` or an :class:`Experiment`).
    """

    def __init__(self, detail: str, *, job: Job | Experiment, **kwargs: Any) -> None:
        super().__init__(detail, **kwargs)
        self.job = job
