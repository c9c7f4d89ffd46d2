"""The cloud's failures as StationError subclasses, sorted by what the caller should do about them.

A sync worker stops on ``CloudAuthError``, ``CloudNotFound`` and ``CloudRedirected`` (retrying
cannot help), backs off on ``CloudRateLimited`` and ``CloudUnavailable``, and records
``CloudRejected`` against the batch it sent.
"""

from __future__ import annotations

from station.errors import InputError, Reason, StationError


class CloudError(StationError):
    """The Particle Cloud API failed or answered something unusable."""

    reason = Reason.CLOUD

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error_code: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.status = status
        self.error_code = error_code
        super().__init__(message, hint=hint, reason=Reason.CLOUD)


class CloudAuthError(CloudError):
    """401/403: the token is invalid, expired, or lacks the scope the endpoint needs. Never retried."""


class CloudNotFound(CloudError):
    """404 on a product path: the product ID or slug is wrong, or the token cannot see it."""


class CloudRedirected(CloudError):
    """3xx: the base URL is not the API's own address. Never followed (the token would go with it)
    and never retried: the same request gets the same redirect."""


class CloudRejected(CloudError):
    """The request itself was refused (400 and other 4xx): retrying the same request gives the same."""


class CloudRetryable(CloudError):
    """A failure that may pass: rate limits, server errors, timeouts, dropped connections."""


class CloudRateLimited(CloudRetryable):
    """429: too many requests. ``retry_after`` is the server's Retry-After in seconds, if it sent one."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        error_code: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.retry_after = retry_after
        super().__init__(message, status=429, error_code=error_code, hint=hint)


class CloudUnavailable(CloudRetryable):
    """5xx, a timeout, a refused or dropped connection, or an answer that could not be parsed."""


class CloudConfigError(InputError):
    """The [cloud] settings or the token are unusable: fix the profile, the option or the file."""

    reason = Reason.BAD_INPUT
