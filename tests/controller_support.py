"""A controller wired to real parts in tmp_path: mock pins, real stores, generated keys."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.core.clock import FixedClock
from agent.core.config import config_from_mapping
from agent.demo.kit import DemoKit, make_kit
from agent.gate.controller import Controller
from agent.gate.parts import InboundHandler, Parts, SyncPort
from agent.gate.timekeeper import Probe, Timekeeper
from agent.protocol.keys import load_keyring
from agent.protocol.revocation import parse_revocation_list
from agent.runtime.hwsettings import indicator_settings, relay_settings
from agent.store import EntryLog, Meta, RevocationStore
from agent.store.replaylog import LoggedReplays
from agent.store.resend import ResendableOutbox
from hw.door import RelayDoor
from hw.indicators import make_indicators
from hw.pins import make_pin_factory

RELAY_PIN = 17


@dataclass
class Rig:
    kit: DemoKit
    clock: FixedClock
    controller: Controller
    entry_log: EntryLog
    revocations: RevocationStore
    factory: Any
    door: RelayDoor
    outbox: ResendableOutbox
    seen: list[dict[str, Any]] = field(default_factory=list)

    @property
    def relay_pin(self) -> Any:
        return self.factory.pin(RELAY_PIN)

    def rows(self) -> list[dict[str, Any]]:
        return [entry.event for entry in self.entry_log.history()]

    def relay_went_high(self) -> bool:
        return any(state for _, state in self.relay_pin.states)


@contextmanager
def controller_rig(
    tmp_path: Path, *, clock_probe: Probe | None = None, sync: SyncPort | None = None,
    handlers: dict[str, InboundHandler] | None = None, with_list: bool = True,
    kit: DemoKit | None = None, decide_on_timekeeper: bool = False,
    **sections: dict[str, Any],
) -> Iterator[Rig]:
    """Everything real except the pins (gpiozero MockFactory) and the clock (FixedClock).

    The stores are opened as the daemon opens them (meta.json and the entry log hold the
    high-water marks; replay keys live in the entry log). ``with_list``: a gate that has
    its provisioning list (version 1, revoking the kit's revoked courier); without one
    every grant is ``revocations_unknown``. ``clock_probe``: decide on a Timekeeper
    asking this probe whether NTP has the clock; ``sync``: a stand-in for the link to
    the centre; ``handlers``: extra inbound handlers; ``kit``: the keys of an earlier rig
    (a restart of the same gate); ``decide_on_timekeeper``: the Timekeeper is the
    controller's clock, as in the daemon (the FixedClock is then the system clock).
    """
    kit = kit or make_kit(tmp_path / "kit")
    state = tmp_path / "state"
    raw = kit.config(state, **sections)
    config = config_from_mapping(raw, base_dir=tmp_path)
    clock = FixedClock(time.time())
    factory = make_pin_factory("mock")
    door = RelayDoor(relay_settings(config.door), factory)
    indicators = make_indicators(indicator_settings(config.indicators), factory)
    meta = Meta(state, clock=clock)
    entry_log = EntryLog(state, clock=clock, meta=meta)
    revocations = RevocationStore(state, clock=clock, highwater=entry_log.highwater)
    if with_list and revocations.version is None:
        revocations.apply(parse_revocation_list(
            kit.revocation_list(1, clock.now()),
            load_keyring(config.trust.keys_dir, config.trust.ops_keys_dir), clock.now()))
    replays = LoggedReplays(entry_log)
    seen: list[dict[str, Any]] = []
    outbox = ResendableOutbox(entry_log)
    trust = (Timekeeper(clock, meta, probe=clock_probe, marks=entry_log.highwater)
             if clock_probe is not None else None)
    parts = Parts(
        config=config, clock=trust if trust is not None and decide_on_timekeeper else clock,
        door=door, indicators=indicators,
        keyring=load_keyring(config.trust.keys_dir, config.trust.ops_keys_dir),
        revocations=revocations, replays=replays, meta=meta, entry_log=entry_log,
        trust=trust,
        outbox=outbox, observer=seen.append,
    )
    controller = Controller(parts, extra_handlers=handlers)
    if sync is not None:
        controller.attach_sync(sync)
    rig = Rig(kit, clock, controller, entry_log, revocations, factory, door, outbox, seen)
    try:
        yield rig
    finally:
        controller.stop(5)
        door.close()
        indicators.close()
        revocations.close()
        replays.close()
        entry_log.close()
        meta.close()
        factory.close()
