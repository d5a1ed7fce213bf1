"""LED/buzzer patterns: distinct per outcome, played on the pins, interruptible, off at close."""

from __future__ import annotations

from typing import Any

from agent.core.reasons import DenialClass
from hw.indicators import PATTERNS, LedIndicators, NullIndicators, Step, make_indicators
from hw.settings import IndicatorSettings

IND = IndicatorSettings(green_pin=5, red_pin=6, buzzer_pin=13)


def test_every_outcome_has_its_own_pattern() -> None:
    assert set(PATTERNS) == set(DenialClass)
    shapes = {tuple((s.green, s.red, s.buzzer) for s in steps) for steps in PATTERNS.values()}
    assert len(shapes) == len(PATTERNS)
    assert all(all(step.seconds > 0 for step in steps) for steps in PATTERNS.values())


def test_granted_lights_green_only(factory: Any) -> None:
    green, red, buzzer = factory.pin(5), factory.pin(6), factory.pin(13)
    with_ind = LedIndicators(IND, factory)
    try:
        with_ind.show(DenialClass.GRANTED)
        assert with_ind.wait_idle(5)
    finally:
        with_ind.close()
    assert [s.state for s in green.states] == [False, True, False]
    assert [s.state for s in red.states] == [False]
    assert [s.state for s in buzzer.states] == [False, True, False]


def test_pattern_is_played_step_by_step(factory: Any) -> None:
    red = factory.pin(6)
    pattern = {
        **PATTERNS,
        DenialClass.REVOKED: (Step(0, 1, 0, 0.05), Step(0, 0, 0, 0.05), Step(0, 1, 0, 0.05)),
    }
    ind = LedIndicators(IND, factory, patterns=pattern)
    try:
        ind.show(DenialClass.REVOKED)
        assert ind.wait_idle(5)
    finally:
        ind.close()
    assert [s.state for s in red.states] == [False, True, False, True, False]


def test_new_outcome_interrupts_the_current_one(factory: Any) -> None:
    green, red = factory.pin(5), factory.pin(6)
    pattern = {
        **PATTERNS,
        DenialClass.INVALID: (Step(0, 1, 0, 30.0),),
        DenialClass.GRANTED: (Step(1, 0, 0, 0.05),),
    }
    ind = LedIndicators(IND, factory, patterns=pattern)
    try:
        ind.show(DenialClass.INVALID)
        ind.show(DenialClass.GRANTED)
        assert ind.wait_idle(5)  # the 30 s red did not run to its end
    finally:
        ind.close()
    assert green.states[-1].state is False
    assert red.state is False


def test_close_switches_everything_off(factory: Any) -> None:
    pins = [factory.pin(n) for n in (5, 6, 13)]
    ind = LedIndicators(IND, factory)
    ind.show(DenialClass.UNAVAILABLE)
    ind.close()
    ind.close()
    assert all(p.state is False for p in pins)


def test_no_pins_configured_gives_null_indicators(factory: Any) -> None:
    ind = make_indicators(IndicatorSettings(), factory)
    assert isinstance(ind, NullIndicators)
    ind.show(DenialClass.REVOKED)
    ind.close()


def test_only_configured_pins_are_driven(factory: Any) -> None:
    ind = make_indicators(IndicatorSettings(red_pin=6), factory)
    assert isinstance(ind, LedIndicators)
    try:
        ind.show(DenialClass.GRANTED)
        assert ind.wait_idle(5)
    finally:
        ind.close()


def test_the_words_for_each_pattern_are_read_off_the_table_the_leds_play() -> None:
    from hw.pattern_text import describe, signal_text

    assert signal_text(DenialClass.INVALID) == (
        "invalid code: red 1.5 s; buzzer one 0.8 s beep")  # one long red, one long buzz
    assert signal_text(DenialClass.WRONG_SCOPE).startswith("wrong gate: red/green alternating")
    assert describe(PATTERNS[DenialClass.UNAVAILABLE]).buzzer == "silent"
    changed = (Step(0, 1, 1, 0.1), Step(0, 0, 0, 0.1)) * 3
    assert describe(changed) == ("red blinks x3 (0.1 s)", "three 0.1 s beeps")
    texts = {signal_text(outcome).split(": ", 1)[1] for outcome in DenialClass}
    assert len(texts) == len(DenialClass)  # every outcome reads differently


def test_the_docs_table_is_the_table_the_leds_play() -> None:
    from agent.core.reasons import COURIER_SHOULD, OUTCOME_TEXT
    from hw.pattern_text import describe
    from tests.conftest import ROOT

    doc = (ROOT / "docs" / "hardware.md").read_text(encoding="utf-8")
    for outcome in DenialClass:
        text = describe(PATTERNS[outcome])
        row = (f"| {OUTCOME_TEXT[outcome]} | `{outcome.value}` | {text.lights} | {text.buzzer} "
               f"| {COURIER_SHOULD[outcome]} |")
        assert row in doc, f"docs/hardware.md lacks: {row}"


def test_the_demo_panel_shows_the_pattern_the_gate_plays() -> None:
    import io

    from agent.demo.view import PanelView

    out = io.StringIO()
    panel = PanelView(out)
    panel({"type": "decision", "granted": False, "reason": "malformed", "sub": None,
           "method": "sim", "ts": "2026-12-01T10:00:00.000Z"})
    panel.stop()
    assert "LEDs      invalid code: red 1.5 s; buzzer one 0.8 s beep" in out.getvalue()
    assert "red x3" not in out.getvalue()
