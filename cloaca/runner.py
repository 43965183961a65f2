"""``DefaultRunner`` and ``AsyncRunner``: the public facades of the runtime.

``DefaultRunner`` (API.md 3.9) hosts the runtime on an event loop in a background
thread and offers blocking, thread-safe methods. ``AsyncRunner`` (API.md section 0
item 5) runs the same runtime on the caller's own event loop. Both translate
internal errors into API.md's exceptions here and nowhere else.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AbstractContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self, TypeVar, cast

from cloaca import texts
from cloaca.config import DefaultRunnerConfig, RunnerSettings, settings_of
from cloaca.context import Context, encode_context_data
from cloaca.errors import (
    ConfigurationTypeError,
    ConfigurationValueError,
    WorkflowTypeError,
)
from cloaca.result import PipelineResult
from cloaca.runtime.errors import EngineError, to_public
from cloaca.schedules import AsyncCronTriggerMethods, CronTriggerMethods
from cloaca.storage.errors import StorageError
from cloaca.storage.identifiers import InvalidIdentifier
from cloaca.storage.urls import mask_password

if TYPE_CHECKING:
    from cloaca.runtime.engine import Runtime

T = TypeVar("T")


def _runtime_class() -> type[Runtime]:
    # Imported on first use: the runtime (anyio, actors, drivers) would more than
    # double the cost of ``import cloaca`` (issue 3 asks for under 100 ms).
    from cloaca.runtime.engine import Runtime

    return Runtime


def _check_url(database_url: object) -> str:
    if not isinstance(database_url, str):
        raise ConfigurationTypeError(
            f"database_url must be a str, not {type(database_url).__name__}"
        )
    return database_url


def _check_config(config: object) -> DefaultRunnerConfig:
    if not isinstance(config, DefaultRunnerConfig):
        raise ConfigurationTypeError(
            f"config must be a DefaultRunnerConfig, not {type(config).__name__}"
        )
    return config


def check_schema_name(database_url: str, schema: object) -> str:
    """API.md 3.9.1 checks 1-3, in order, before any connection is attempted."""
    if not isinstance(schema, str):
        raise ConfigurationTypeError(
            f"schema must be a str, not {type(schema).__name__}"
        )
    if not database_url.startswith(("postgres://", "postgresql://")):
        raise ConfigurationValueError(texts.SCHEMA_REQUIRES_POSTGRES)
    if schema == "":
        raise ConfigurationValueError(texts.SCHEMA_EMPTY)
    if not all(ch.isalnum() or ch == "_" for ch in schema):
        raise ConfigurationValueError(texts.SCHEMA_CHARSET)
    return schema


def _check_execute_args(workflow_name: object, context: object) -> str:
    if not isinstance(workflow_name, str):
        raise WorkflowTypeError(
            f"workflow_name must be a str, not {type(workflow_name).__name__}"
        )
    if not isinstance(context, Context):
        raise WorkflowTypeError(
            f"context must be a cloaca.Context, not {type(context).__name__}"
        )
    return encode_context_data(context._data)


def _open_error(
    url: str, error: StorageError | InvalidIdentifier, schema: str | None
) -> BaseException:
    """The public error of a runner that cannot open its database (section 0, 10)."""
    masked = mask_password(url)
    public = (
        ConfigurationValueError(str(error))
        if isinstance(error, InvalidIdentifier)
        else to_public(error)
    )
    if schema is not None:
        return type(public)(
            texts.SCHEMA_RUNNER_FAILED.format(
                schema=f"'{schema}' on {masked}", reason=error
            )
        )
    return type(public)(f"Cannot open database {masked}: {error}")


class _Base:
    """What both runners share: configuration and argument checks."""

    _settings: RunnerSettings
    _url: str
    _schema: str | None

    def _setup(self, database_url: object, config: object, schema: str | None) -> None:
        self._url = _check_url(database_url)
        self._settings = settings_of(_check_config(config))
        self._schema = schema


class DefaultRunner(_Base, CronTriggerMethods):
    """Executes registered workflows durably; blocking and thread-safe (API.md 3.9).

    The runner connects, creates or migrates the schema, recovers interrupted
    executions and starts its services as soon as it is constructed. Use it as a
    context manager, or call ``shutdown()`` when done.
    """

    def __init__(self, database_url: str) -> None:
        self._start(database_url, DefaultRunnerConfig(), None)

    @staticmethod
    def with_config(database_url: str, config: DefaultRunnerConfig) -> DefaultRunner:
        """A runner with ``config`` (copied: later changes do not apply)."""
        runner = object.__new__(DefaultRunner)
        runner._start(database_url, config, None)
        return runner

    @staticmethod
    def with_schema(database_url: str, schema: str) -> DefaultRunner:
        """A runner whose tables live in PostgreSQL schema ``schema`` (API.md 3.9.1)."""
        url = _check_url(database_url)
        check_schema_name(url, schema)
        return DefaultRunner._open(url, DefaultRunnerConfig(), schema)

    @staticmethod
    def _open(
        database_url: str, config: DefaultRunnerConfig, schema: str | None
    ) -> DefaultRunner:
        """Configuration and schema together (the CLI and the tests need both)."""
        runner = object.__new__(DefaultRunner)
        runner._start(database_url, config, schema)
        return runner

    def _start(self, database_url: object, config: object, schema: str | None) -> None:
        self._setup(database_url, config, schema)
        self._lock = threading.Lock()
        self._closed = True
        import anyio.from_thread

        try:
            runtime = _runtime_class()(self._url, self._settings, schema=schema)
        except (StorageError, InvalidIdentifier) as exc:
            raise _open_error(self._url, exc, schema) from exc
        self._runtime = runtime
        self._portal_cm = anyio.from_thread.start_blocking_portal(name="cloaca-runtime")
        self._portal = self._portal_cm.__enter__()
        self._runtime_cm: AbstractContextManager[Runtime] = (
            self._portal.wrap_async_context_manager(runtime)
        )
        try:
            self._runtime_cm.__enter__()
        except StorageError as exc:
            self._portal_cm.__exit__(None, None, None)
            raise _open_error(self._url, exc, schema) from exc
        except BaseException:
            self._portal_cm.__exit__(None, None, None)
            raise
        self._closed = False

    # -- execution -------------------------------------------------------------

    def _call(self, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
        if self._closed:
            raise to_public(_closed())
        try:
            return cast(T, self._portal.call(fn, *args))
        except EngineError as exc:
            raise to_public(exc) from exc
        except StorageError as exc:
            raise to_public(exc) from exc

    def execute(self, workflow_name: str, context: Context) -> PipelineResult:
        """Run ``workflow_name`` on a copy of ``context``; block until it ends."""
        context_json = _check_execute_args(workflow_name, context)
        outcome = self._call(self._runtime.execute, workflow_name, context_json)
        return PipelineResult._from_outcome(outcome)

    def execute_async(
        self, workflow_name: str, context: Context
    ) -> Awaitable[PipelineResult]:
        """An awaitable of ``execute(...)``, usable from any running event loop."""
        context_json = _check_execute_args(workflow_name, context)

        async def wait() -> PipelineResult:
            import anyio.to_thread

            outcome = await anyio.to_thread.run_sync(
                self._call, self._runtime.execute, workflow_name, context_json
            )
            return PipelineResult._from_outcome(outcome)

        return wait()

    def _wait_for(self, execution_id: str) -> None:
        """Block until an execution started elsewhere (e.g. resumed) has ended."""
        import uuid

        self._call(self._runtime.wait_for, uuid.UUID(execution_id))

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        """Resume taking work after ``stop()``; idempotent (API.md section 0 item 9)."""
        self._call(self._runtime.resume_intake)

    def stop(self) -> None:
        """Stop starting new attempts; running ones finish. Idempotent."""
        self._call(self._runtime.stop_intake)

    def shutdown(self) -> None:
        """Stop every service, flush the journal, release the database; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._runtime_cm.__exit__(None, None, None)
        finally:
            self._portal_cm.__exit__(None, None, None)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        self.shutdown()
        return False

    def __repr__(self) -> str:
        return "DefaultRunner(thread_separated_async_runtime)"


def _plain_signature(*names: str) -> inspect.Signature:
    """A signature without annotations, as the reference's introspection shows it."""
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    return inspect.Signature([inspect.Parameter(name, kind) for name in names])


# API.md 3.9.1: the introspected signature of with_schema is exactly
# ``(database_url, schema)``; postponed annotations would show as strings.
DefaultRunner.with_schema.__signature__ = _plain_signature(  # type: ignore[attr-defined]
    "database_url", "schema"
)


def _closed() -> EngineError:
    from cloaca.runtime.errors import RunnerClosed

    return RunnerClosed()


class AsyncRunner(_Base, AsyncCronTriggerMethods):
    """The runtime on the caller's own event loop (API.md section 0 item 5).

    Use ``async with AsyncRunner(url) as runner:`` and ``await runner.execute(...)``;
    thousands of concurrent executions from one loop are fine.
    """

    def __init__(self, database_url: str) -> None:
        self._setup(database_url, DefaultRunnerConfig(), None)
        self._runtime: Runtime | None = None

    @staticmethod
    def with_config(database_url: str, config: DefaultRunnerConfig) -> AsyncRunner:
        """An async runner with the given configuration."""
        return AsyncRunner._open(database_url, config, None)

    @staticmethod
    def with_schema(database_url: str, schema: str) -> AsyncRunner:
        """An async runner on PostgreSQL schema ``schema`` (API.md 3.9.1)."""
        url = _check_url(database_url)
        check_schema_name(url, schema)
        return AsyncRunner._open(url, DefaultRunnerConfig(), schema)

    @staticmethod
    def _open(
        database_url: str, config: DefaultRunnerConfig, schema: str | None
    ) -> AsyncRunner:
        """Configuration and schema together (the CLI and the benchmarks need both)."""
        runner = object.__new__(AsyncRunner)
        runner._setup(database_url, config, schema)
        runner._runtime = None
        return runner

    async def __aenter__(self) -> Self:
        try:
            runtime = _runtime_class()(self._url, self._settings, schema=self._schema)
            await runtime.__aenter__()
        except (StorageError, InvalidIdentifier) as exc:
            raise _open_error(self._url, exc, self._schema) from exc
        self._runtime = runtime
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown()

    def _live(self) -> Runtime:
        if self._runtime is None or self._runtime.closed:
            raise to_public(_closed())
        return self._runtime

    async def execute(self, workflow_name: str, context: Context) -> PipelineResult:
        """Run ``workflow_name`` on a copy of ``context`` and await its end."""
        context_json = _check_execute_args(workflow_name, context)
        try:
            outcome = await self._live().execute(workflow_name, context_json)
        except (EngineError, StorageError) as exc:
            raise to_public(exc) from exc
        return PipelineResult._from_outcome(outcome)

    async def start(self) -> None:
        """Resume taking work after ``stop()``."""
        await self._live().resume_intake()

    async def stop(self) -> None:
        """Stop starting new attempts; running ones finish."""
        await self._live().stop_intake()

    async def shutdown(self) -> None:
        """Graceful shutdown; idempotent."""
        if self._runtime is not None:
            await self._runtime.aclose()

    def __repr__(self) -> str:
        return "AsyncRunner()"
