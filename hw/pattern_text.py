"""The words for an indicator pattern, read off the very table the LEDs play.

The demo panel and docs/hardware.md describe what a courier sees and hears; writing that
by hand drifted ("red x3" in the demo where the gate gave one long red and a long buzz).
Here the text is derived from :data:`hw.indicators.PATTERNS`, so a pattern changed there
is described anew everywhere (a test holds docs/hardware.md to this text).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from agent.core.reasons import OUTCOME_TEXT, DenialClass
from hw.indicators import PATTERNS, Step

Span = tuple[str, float]  # (light, seconds): "green", "red", "amber" or "dark"
_LIGHT = {(1, 0): "green", (0, 1): "red", (1, 1): "amber", (0, 0): "dark"}
_COUNT = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}


class PatternText(NamedTuple):
    lights: str
    buzzer: str


def _s(seconds: float) -> str:
    return f"{seconds:.2f}".rstrip("0").rstrip(".") + " s"


def _spans(steps: Sequence[Step]) -> list[Span]:
    """Lights per step, equal neighbours merged (green 0.1 s + green 1.9 s = green 2 s)."""
    spans: list[Span] = []
    for step in steps:
        light = _LIGHT[(step.green, step.red)]
        if spans and spans[-1][0] == light:
            spans[-1] = (light, round(spans[-1][1] + step.seconds, 3))
        else:
            spans.append((light, step.seconds))
    return spans


def _repeat_at(spans: list[Span], i: int) -> tuple[int, int]:
    """(unit length, times) of the longest run of a repeated unit starting at ``i``."""
    best = (1, 1)
    for size in range(1, (len(spans) - i) // 2 + 1):
        unit, times = spans[i:i + size], 1
        while spans[i + times * size:i + (times + 1) * size] == unit:
            times += 1
        if times > 1 and size * times > best[0] * best[1]:
            best = (size, times)
    return best


def _unit(unit: list[Span], times: int) -> str:
    if len(unit) == 1:
        light, seconds = unit[0]
        return f"{light} {_s(seconds)}" + (f" x{times}" if times > 1 else "")
    if len(unit) == 2 and unit[1][0] == "dark":
        (light, on), (_, off) = unit
        each = _s(on) if on == off else f"{_s(on)} on, {_s(off)} off"
        return f"{light} blinks x{times} ({each})"
    if len(unit) == 2 and unit[0][1] == unit[1][1]:
        return f"{unit[0][0]}/{unit[1][0]} alternating x{times} ({_s(unit[0][1])} each)"
    return "(" + ", ".join(f"{light} {_s(s)}" for light, s in unit) + f") x{times}"


def _lights(steps: Sequence[Step]) -> str:
    spans, parts, i = _spans(steps), [], 0
    while i < len(spans):
        size, times = _repeat_at(spans, i)
        unit = spans[i:i + size]
        i += size * times
        if not (i == len(spans) and unit == [unit[0]] and unit[0][0] == "dark"):
            parts.append(_unit(unit, times))  # (a pattern's final dark is not worth a word)
    return ", then ".join(parts) or "dark"


def _buzzer(steps: Sequence[Step]) -> str:
    beeps: list[float] = []
    on = False
    for step in steps:
        if step.buzzer and on:
            beeps[-1] = round(beeps[-1] + step.seconds, 3)
        elif step.buzzer:
            beeps.append(step.seconds)
        on = bool(step.buzzer)
    if not beeps:
        return "silent"
    if len(set(beeps)) == 1:
        count = _COUNT.get(len(beeps), str(len(beeps)))
        return f"{count} {_s(beeps[0])} beep{'s' if len(beeps) > 1 else ''}"
    return "beeps of " + ", ".join(_s(b) for b in beeps)


def describe(steps: Sequence[Step]) -> PatternText:
    """What a pattern looks like and sounds like, in words."""
    return PatternText(_lights(steps), _buzzer(steps))


def signal_text(outcome: DenialClass) -> str:
    """One line for a view: the outcome's phrase, then its lights and buzzer."""
    text = describe(PATTERNS[outcome])
    return f"{OUTCOME_TEXT[outcome]}: {text.lights}; buzzer {text.buzzer}"
