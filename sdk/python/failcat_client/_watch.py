"""`client.watch(...)`: capture a model call that raised or answered with low confidence.

As a decorator the call's arguments become `input` and its return value `prediction`; the
exception is re-raised untouched. As a context manager the caller names the input and reports
the result with `w.result(prediction, confidence=...)`.

    @client.watch(model=("fraud", "3.2.0"), data_source="payments", min_confidence=0.5)
    def score(features): ...

    with client.watch(model=..., data_source=..., input=features, min_confidence=0.5) as w:
        w.result(model.predict(features), confidence=p)
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
import traceback
from collections.abc import Mapping
from typing import Any, Callable, Optional

log = logging.getLogger("failcat_client")

MAX_TRACEBACK_CHARS = 8000


def default_confidence(result: Any) -> Optional[float]:
    """`result["confidence"]`, `result.confidence`, or the float of a (label, float) pair."""
    value: Any = None
    if isinstance(result, Mapping):
        value = result.get("confidence")
    elif hasattr(result, "confidence"):
        value = result.confidence
    elif isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], float):
        value = result[1]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def exception_signal(exc: BaseException) -> dict[str, Any]:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return {
        "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
        "message": str(exc)[:2000],
        "traceback": text[-MAX_TRACEBACK_CHARS:],
    }


class Watch:
    """Options: `model`, `model_version`, `data_source`, `min_confidence` (capture results
    below it), `confidence` (a function from the result to its confidence, default
    `default_confidence`), `input` (context-manager form), `capture_exceptions` (default
    True), `exceptions` (the types to capture, default Exception), and any other wire field
    (`environment`, `tags`, `signals`, ...) added to every capture."""

    def __init__(
        self,
        client: Any,
        *,
        model: Any = None,
        model_version: Optional[str] = None,
        data_source: Optional[str] = None,
        min_confidence: Optional[float] = None,
        confidence: Callable[[Any], Optional[float]] = default_confidence,
        input: Any = None,
        capture_exceptions: bool = True,
        exceptions: tuple[type[BaseException], ...] = (Exception,),
        **fields: Any,
    ) -> None:
        self.client = client
        self.model = model
        self.model_version = model_version
        self.data_source = data_source
        self.min_confidence = min_confidence
        self.confidence_of = confidence
        self.input = input
        self.capture_exceptions = capture_exceptions
        self.exceptions = exceptions
        self.fields = fields
        self.captured: Optional[str] = None  # external_id of the last capture
        self._result: Any = None
        self._confidence: Optional[float] = None
        self._has_result = False
        self._started = 0.0

    # ---- the decision, shared by both forms ----------------------------------------------
    def _emit(
        self,
        input: Any,
        prediction: Any,
        confidence: Optional[float],
        latency_ms: float,
        signals: dict[str, Any],
        title: str,
    ) -> Optional[str]:
        fields = dict(self.fields)
        fields["signals"] = {**(fields.get("signals") or {}), **signals}
        fields.setdefault("title", title[:500])
        self.captured = self.client.capture(
            model=self.model,
            model_version=self.model_version,
            data_source=self.data_source,
            input=input,
            prediction=prediction,
            confidence=confidence,
            latency_ms=round(latency_ms, 3),
            **fields,
        )
        return self.captured

    def _on_result(self, name: str, input: Any, result: Any, confidence: Optional[float]) -> None:
        if self.min_confidence is None or confidence is None or confidence >= self.min_confidence:
            return
        self._emit(
            input,
            result,
            confidence,
            (time.perf_counter() - self._started) * 1000,
            {"low_confidence": {"threshold": self.min_confidence, "call": name}},
            f"Low confidence {confidence:.3g} (< {self.min_confidence:g}) from {name}",
        )

    def _on_error(self, name: str, input: Any, exc: BaseException) -> None:
        if not self.capture_exceptions or not isinstance(exc, self.exceptions):
            return
        self._emit(
            input,
            None,
            None,
            (time.perf_counter() - self._started) * 1000,
            {"exception": exception_signal(exc), "call": name},
            f"{type(exc).__name__} raised by {name}: {exc}",
        )

    def _confidence_of(self, result: Any) -> Optional[float]:
        try:
            return self.confidence_of(result)
        except Exception:  # a bad extractor must not break the model call
            log.exception("failcat watch: the confidence function failed")
            return None

    # ---- decorator -----------------------------------------------------------------------
    def __call__(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        name = getattr(fn, "__qualname__", repr(fn))
        signature = inspect.signature(fn)

        def arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            try:
                bound = signature.bind_partial(*args, **kwargs)
            except TypeError:
                return {"args": list(args), "kwargs": kwargs}
            values = dict(bound.arguments)
            values.pop("self", None)
            values.pop("cls", None)
            return values

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                watch = self._fresh()
                watch._started = time.perf_counter()
                try:
                    result = await fn(*args, **kwargs)
                except BaseException as exc:
                    watch._guard(watch._on_error, name, arguments(args, kwargs), exc)
                    raise
                watch._guard_result(name, arguments, args, kwargs, result)
                return result

            return async_wrapper

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            watch = self._fresh()
            watch._started = time.perf_counter()
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                watch._guard(watch._on_error, name, arguments(args, kwargs), exc)
                raise
            watch._guard_result(name, arguments, args, kwargs, result)
            return result

        return wrapper

    def _fresh(self) -> Watch:
        """Per call state (the decorated function may run in many threads at once)."""
        twin = Watch.__new__(Watch)
        twin.__dict__.update(self.__dict__)
        return twin

    def _guard(self, step: Callable[..., None], *args: Any) -> None:
        try:
            step(*args)
        except Exception:  # capturing must never change what the model call does
            log.exception("failcat watch failed to capture")

    def _guard_result(
        self, name: str, arguments: Callable[..., Any], args: Any, kwargs: Any, result: Any
    ) -> None:
        if self.min_confidence is None:
            return
        confidence = self._confidence_of(result)
        if confidence is not None and confidence < self.min_confidence:
            self._guard(self._on_result, name, arguments(args, kwargs), result, confidence)

    # ---- context manager -----------------------------------------------------------------
    def result(self, prediction: Any, confidence: Optional[float] = None) -> None:
        """Report the model's answer inside `with client.watch(...) as w:`."""
        self._result = prediction
        self._has_result = True
        self._confidence = confidence if confidence is not None else self._confidence_of(prediction)

    def __enter__(self) -> Watch:
        self._started = time.perf_counter()
        self._has_result = False
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        if exc is not None:
            self._guard(self._on_error, "block", self.input, exc)
        elif self._has_result:
            self._guard(self._on_result, "block", self.input, self._result, self._confidence)
        return False  # never swallow the caller's exception

    async def __aenter__(self) -> Watch:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        return self.__exit__(exc_type, exc, tb)
