"""Green/red LEDs and a buzzer: one distinct pattern per outcome, patterns are data.

A courier must tell "refresh your code" from "call the centre" without reading a screen,
so each :class:`DenialClass` has its own rhythm. One worker thread plays the newest
request; a new ``show()`` interrupts the pattern playing (the latest scan is what the
courier is looking at).
"""

from __future__ import annotations

import logging
import threading
from functools import partial
from typing import Any, NamedTuple

from agent.core.reasons import DenialClass
from hw.pins import gpio_device
from hw.settings import IndicatorSettings

log = logging.getLogger(__name__)


class Step(NamedTuple):
    """One stretch of a pattern: outputs on (1) or off (0) for ``seconds``."""

    green: int
    red: int
    buzzer: int
    seconds: float


def _blinks(n: int, green: int, red: int, buzz: int, on: float, off: float) -> tuple[Step, ...]:
    return tuple(s for _ in range(n) for s in (Step(green, red, buzz, on), Step(0, 0, 0, off)))


# What each outcome looks and sounds like. hw/pattern_text.py puts it into words for the
# demo and docs/hardware.md (a test holds that table to this one).
PATTERNS: dict[DenialClass, tuple[Step, ...]] = {
    # Green for the whole open pulse, one short chirp.
    DenialClass.GRANTED: (Step(1, 0, 1, 0.1), Step(1, 0, 0, 1.9)),
    # Not a credential: one long red + long buzz. "Get a fresh code from the app."
    DenialClass.INVALID: (Step(0, 1, 1, 0.8), Step(0, 1, 0, 0.7)),
    # Too old: two red blinks with beeps. "Refresh the code."
    DenialClass.EXPIRED: (*_blinks(2, 0, 1, 1, 0.2, 0.2), Step(0, 1, 0, 0.8)),
    # Withdrawn: three red blinks with beeps, then red, 3 s in all. "Call the centre."
    DenialClass.REVOKED: (*_blinks(3, 0, 1, 1, 0.15, 0.15), Step(0, 1, 0, 2.1)),
    # Valid elsewhere: red/green alternating. "Wrong gate."
    DenialClass.WRONG_SCOPE: tuple(
        s for _ in range(3) for s in (Step(0, 1, 1, 0.25), Step(1, 0, 0, 0.25))
    ),
    # Screenshot or reuse: rapid red flicker, no long buzz. "Show the live code."
    DenialClass.REPLAYED: (*_blinks(6, 0, 1, 0, 0.08, 0.08), Step(0, 1, 1, 0.3)),
    # Gate cannot decide now: both LEDs (amber) slow blink, no buzzer.
    DenialClass.UNAVAILABLE: _blinks(3, 1, 1, 0, 0.4, 0.4),
}


_PART = {"green": "green LED", "red": "red LED", "buzzer": "buzzer"}


class NullIndicators:
    """Indicators for a gate with no LEDs or buzzer configured."""

    def show(self, outcome: DenialClass) -> None:
        log.debug("indicator pattern %s (no indicator pins configured)", outcome)

    def close(self) -> None:
        pass


class LedIndicators:
    """agent.core.ports.Indicators on gpiozero outputs; pins that are not configured are skipped."""

    def __init__(
        self,
        ind: IndicatorSettings,
        factory: Any,
        patterns: dict[DenialClass, tuple[Step, ...]] | None = None,
    ) -> None:
        """HardwareError (with what to do) when an indicator pin cannot be driven."""
        from gpiozero import DigitalOutputDevice

        self._patterns = patterns or PATTERNS
        self._outputs: dict[str, Any] = {}
        try:
            for name in ("green", "red", "buzzer"):
                pin: int | None = getattr(ind, f"{name}_pin")
                if pin is not None:
                    self._outputs[name] = gpio_device(_PART[name], pin, partial(
                        DigitalOutputDevice, pin, active_high=ind.active_high,
                        initial_value=False, pin_factory=factory,
                    ))
        except Exception:
            self._release()
            raise
        self._cond = threading.Condition()
        self._wanted: DenialClass | None = None
        self._generation = 0
        self._closed = False
        self._idle = threading.Event()
        self._idle.set()
        self._worker = threading.Thread(target=self._run, name="indicators", daemon=True)
        self._worker.start()

    def show(self, outcome: DenialClass) -> None:
        """Play ``outcome``'s pattern, interrupting whatever is playing."""
        with self._cond:
            if self._closed:
                return
            self._wanted = outcome
            self._generation += 1
            self._idle.clear()
            self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """True once no pattern is playing (for tests and orderly shutdown)."""
        return self._idle.wait(timeout)

    def _set(self, step: Step) -> None:
        for name, on in (("green", step.green), ("red", step.red), ("buzzer", step.buzzer)):
            out = self._outputs.get(name)
            if out is not None:
                out.value = bool(on)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closed or self._wanted is not None)
                if self._closed:
                    return
                outcome, self._wanted = self._wanted, None
                generation = self._generation
            assert outcome is not None
            self._play(self._patterns.get(outcome, self._patterns[DenialClass.INVALID]), generation)
            with self._cond:
                if self._wanted is None:
                    self._idle.set()

    def _play(self, steps: tuple[Step, ...], generation: int) -> None:
        try:
            for step in steps:
                self._set(step)
                with self._cond:
                    interrupted = self._cond.wait_for(
                        lambda: self._closed or self._generation != generation, step.seconds
                    )
                if interrupted:
                    return
        except Exception:
            log.exception("indicator pattern failed")
        finally:
            self._set(Step(0, 0, 0, 0.0))

    def close(self) -> None:
        """Stop the worker and switch everything off; safe to call twice."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        if self._worker is not threading.current_thread():
            self._worker.join(2.0)
        self._release()
        self._idle.set()

    def _release(self) -> None:
        for out in self._outputs.values():
            try:
                out.off()
            finally:
                out.close()
        self._outputs.clear()


def make_indicators(ind: IndicatorSettings, factory: Any) -> LedIndicators | NullIndicators:
    """LedIndicators when any indicator pin is configured, else NullIndicators."""
    if ind.green_pin is None and ind.red_pin is None and ind.buzzer_pin is None:
        return NullIndicators()
    return LedIndicators(ind, factory)
