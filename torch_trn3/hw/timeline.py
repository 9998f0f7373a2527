"""A simulated clock per logical device: when each op starts and ends.

The rule, kept simple so it can be explained in one sentence:

    an op starts at max(its engine's free time, the end of the previous op
    of its stream), and ends ``duration_s`` later.

Each engine runs one op at a time; a stream runs its ops in order (each op is
taken to depend on the previous op of the same stream, unless scheduled with
``depends_on_previous=False``). Engines of a core therefore overlap only
where the data dependencies allow it: ops of different streams (e.g. a copy
or collective stream beside the compute stream) run side by side on
different engines, and an op marked independent can start on an idle engine
while its stream's previous op is still running. The LNC cores of a device
are one set of engines here: :mod:`.cost` has already divided each op's work
over them.

Called once per op, so it is plain lists and a dict, no dataclasses.
"""
from __future__ import annotations

from typing import Dict, Tuple

from .cost import Engine


def _index(engine) -> int:
    """An engine's slot: an :class:`Engine` or its int value."""
    return engine if type(engine) is int else engine.value


class DeviceTimeline:
    """Simulated time of one logical device, in seconds since ``reset()``."""

    __slots__ = ("num_engines", "_engine_free", "_engine_busy", "_stream_end")

    def __init__(self, num_engines: int = len(Engine)) -> None:
        self.num_engines = num_engines
        self.reset()

    def reset(self) -> None:
        """Back to time zero with every engine idle and every stream empty."""
        self._engine_free = [0.0] * self.num_engines
        self._engine_busy = [0.0] * self.num_engines
        self._stream_end: Dict[int, float] = {}

    def schedule(self, engine, duration_s: float, stream: int = 0,
                 depends_on_previous: bool = True) -> Tuple[float, float]:
        """Place an op of ``duration_s`` on ``engine``; return (start_s, end_s)."""
        i = _index(engine)
        start = self._engine_free[i]
        ready = self._stream_end.get(stream, 0.0)
        if depends_on_previous and ready > start:
            start = ready
        end = start + duration_s
        self._engine_free[i] = end
        self._engine_busy[i] += duration_s
        if end > ready:
            self._stream_end[stream] = end
        return start, end

    def wait_until(self, time_s: float, stream: int = 0) -> None:
        """Make the next op of ``stream`` start no earlier than ``time_s``.

        This is ``stream.wait_event(event)`` when the event was recorded at
        ``time_s`` on another stream.
        """
        if time_s > self._stream_end.get(stream, 0.0):
            self._stream_end[stream] = time_s

    def now(self, stream: int = 0) -> float:
        """When the last op of ``stream`` ends (what an event records)."""
        return self._stream_end.get(stream, 0.0)

    def horizon(self) -> float:
        """When every op scheduled so far has ended (device synchronize)."""
        return max(self._engine_free + list(self._stream_end.values()))

    def engine_busy_s(self, engine) -> float:
        """Total time ``engine`` has spent running ops."""
        return self._engine_busy[_index(engine)]
