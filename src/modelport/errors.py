"""The one exception tree of modelport.

    ModelportError                 500  base class; never raised directly
    ├── InvalidInput               400  bad request data, bad arguments, a file that is not a model
    │   └── InvalidReference       400  "name", "name:3", "name@alias" that does not parse
    ├── Unauthorized               401  missing or wrong credentials
    │   └── Forbidden              403  valid credentials, role not allowed
    ├── NotFound                   404  unknown model, version or alias
    ├── Conflict                   409  the operation contradicts the current state
    ├── PayloadTooLarge            413  request body over the configured limit
    ├── Overloaded                 429  a bounded queue is full; retry after ``retry_after`` s
    ├── NotReady                   503  model not loaded yet / being swapped
    │   └── Busy                   503  the server is at its concurrency limit; shed, retry later
    ├── Timeout                    504  request took longer than its deadline
    ├── BackendError               500  a runtime or framework failed on valid input
    │   └── MissingDependency      500  an optional extra is not installed
    └── CorruptArtifact            500  a stored blob no longer matches its sha256

Backend exceptions are translated into this tree once, at the runtime boundary.
"""

from __future__ import annotations


class ModelportError(Exception):
    status: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidInput(ModelportError):
    status = 400


class InvalidReference(InvalidInput):
    pass


class Unauthorized(ModelportError):
    status = 401


class Forbidden(Unauthorized):
    status = 403


class NotFound(ModelportError):
    status = 404


class Conflict(ModelportError):
    status = 409


class PayloadTooLarge(ModelportError):
    status = 413


class Overloaded(ModelportError):
    status = 429

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NotReady(ModelportError):
    status = 503


class Busy(NotReady):
    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Timeout(ModelportError):
    status = 504


class BackendError(ModelportError):
    status = 500


class MissingDependency(BackendError):
    def __init__(self, package: str, extra: str) -> None:
        super().__init__(f"{package} is not installed; install it with: {install_command(extra)}")
        self.package = package
        self.extra = extra


def install_command(extra: str) -> str:
    """How to install modelport with an extra ("" for the base package)."""
    return f"pip install 'modelport[{extra}]'" if extra else "pip install modelport"


class CorruptArtifact(ModelportError):
    status = 500


def first_line(exc: BaseException, skip: tuple[str, ...] = ()) -> str:
    """The first line of an exception's message that does not start with ``skip`` (its class
    name when the message is empty), for one-line errors."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(skip)]
    return (useful or lines or [type(exc).__name__])[0]
