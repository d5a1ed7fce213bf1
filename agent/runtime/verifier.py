"""``gate-agent verify``'s engine: the daemon's rulebook on the daemon's state, one shot.

It builds the same :class:`~agent.gate.gatekeeper.Gatekeeper` the controller uses, over
the state folder's revocation list (read only), replay cache, commanded mode and time
floor, and judges with the same decision clock (the timekeeper: untrusted when the
kernel says the clock is not synchronised). So verify answers what the daemon would
answer now, with two documented exceptions: it keeps no rate limit (a batch check of
many codes is not a flood at a door), and ``--at`` pins the clock, taken as trusted.

Only one process writes the state folder. verify takes the daemon's writer lock while
it runs; when the daemon (or another verify) holds it, verify checks the replay keys
read-only and says so on stderr: a live code granted then is remembered only for the
rest of this run, never written behind the daemon's back. With ``--at`` verify never
writes the gate's state at all (no replay key, no mode or clock change): a look at
another time must not prune or fill the daemon's memory.

The revocation list's high-water mark is read from both copies (meta.json, outbox.db),
so a downgraded or lost list is ``revocations_unknown`` here as in the daemon.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.core.clock import Clock
from agent.core.config import Config
from agent.core.errors import ConfigError, KeyFileError, StateError, StateInUseError, UsageError
from agent.core.reasons import Reason
from agent.gate.gatekeeper import Gatekeeper, Verdict
from agent.gate.modes import ModeKeeper
from agent.gate.policy import Decision
from agent.gate.timekeeper import Probe, Timekeeper, clock_settings, system_clock_synchronised
from agent.protocol.keys import KeyRing, load_keyring
from agent.store.entrylog import OUTBOX_FILE, EntryLog
from agent.store.files import WriterLock, ensure_dir
from agent.store.meta import META_FILE, Meta
from agent.store.recovery import read_recoveries
from agent.store.replaylog import LoggedReplays
from agent.store.revocations import LOCK, RevocationStore

if TYPE_CHECKING:
    from hw.decoders import Decoder


class Verifier:
    """Judge codes as the gate would; close() releases the state folder."""

    def __init__(self, config: Config, clock: Clock, *, pinned: bool = False,
                 probe: Probe = system_clock_synchronised) -> None:
        """``pinned``: the clock was set by hand (``--at``) and is taken as trusted."""
        self._decoder: Decoder | None = None
        try:
            keyring: KeyRing = load_keyring(config.trust.keys_dir, config.trust.ops_keys_dir)
        except KeyFileError as exc:
            raise ConfigError(f"trust: {exc}", str(config.path)) from None
        state = config.state.dir
        self._lock = None if pinned else _writer_lock(state)
        writes = self._lock is not None
        self._meta: Meta | None = None
        self._log: EntryLog | None = None
        try:
            if writes:
                self._meta = Meta(state, clock=clock)
            elif (state / META_FILE).is_file():
                self._meta = Meta(state, read_only=True)
            if writes or (state / OUTBOX_FILE).is_file():
                # A writer passes meta.json: the log's clean close is recorded there.
                self._log = EntryLog(state, clock=clock, read_only=not writes,
                                     meta=self._meta if writes else None)
            self.replays = _replays(self._log, memory_only=not writes)
            self.revocations = RevocationStore(
                state, clock=clock, read_only=True,
                min_version=read_recoveries(state).revocations_mark())
        except BaseException:
            self.close()
            raise
        timekeeper = None if pinned else Timekeeper(
            clock, self._meta, probe, settings=clock_settings(config.clock))
        self.clock: Clock = timekeeper or clock
        self.gatekeeper = Gatekeeper(
            config, keyring, self.revocations, self.replays, trust=timekeeper,
            modes=ModeKeeper(config.policy.mode, self._meta if writes else _ReadOnly(self._meta),
                             self.clock.now()),
        )

    def judge(self, text: str) -> Verdict:
        now = self.clock.now()
        return self.gatekeeper.remember(self.gatekeeper.judge(text, now), now)

    def judge_image(self, path: Path) -> list[Verdict]:
        """One verdict per code: the first in decoder order is judged, as the gate does
        with a frame; the others are ``extra_code``, neither verified nor remembered."""
        texts = self._decode_image(path)
        if not texts:
            return [Verdict(Decision(False, Reason.NO_CODE, detail=f"no QR code read in {path}"),
                            False, Reason.NO_CODE)]
        ignored = Verdict(Decision(False, Reason.EXTRA_CODE,
                                   detail="another code in the same image was decided"),
                          False, Reason.EXTRA_CODE)
        return [self.judge(texts[0]), *(ignored for _ in texts[1:])]

    def _decode_image(self, path: Path) -> list[str]:
        from hw.imagefile import read_gray  # the image path only: keep `verify TEXT` light

        if not path.is_file():
            raise UsageError(f"{path} does not exist or is not a file")
        gray = read_gray(path)  # file size and pixel count checked before decoding
        if self._decoder is None:
            from hw.decoders import make_decoder

            # Single images: the fallback decoder runs on every one, never rate-limited.
            self._decoder = make_decoder("auto")
        texts: list[str] = self._decoder.decode(gray).texts
        return texts

    def close(self) -> None:
        for part in (getattr(self, "revocations", None), self._log, self._meta):
            if part is not None:
                part.close()
        self._log = self._meta = None
        self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None


class _EmptyReplays:
    """No entry log yet: nothing was ever granted here; remember for this run only."""

    def __init__(self) -> None:
        self._keys: set[str] = set()

    def seen(self, key: str) -> bool:
        return key in self._keys

    def refuses(self, until: float) -> bool:
        return False

    def remember(self, key: str, until: float) -> None:
        self._keys.add(key)


def _replays(entry_log: EntryLog | None, *, memory_only: bool) -> LoggedReplays | _EmptyReplays:
    if entry_log is None:
        return _EmptyReplays()
    return LoggedReplays(entry_log, memory_only=memory_only)


class _ReadOnly:
    """Meta as a mode source that is never written (verify --at, or without the lock)."""

    def __init__(self, meta: Meta | None) -> None:
        self._meta = meta

    def get(self, key: str, default: Any = None) -> Any:
        return default if self._meta is None else self._meta.get(key, default)

    def set(self, key: str, value: Any) -> None:
        """Not this process's to write: the daemon keeps the mode."""


def _writer_lock(state_dir: Path) -> WriterLock | None:
    """The state folder's writer lock (the daemon's), or None when verify may not write."""
    try:
        ensure_dir(state_dir)
        return WriterLock(state_dir / LOCK, "the gate state")
    except StateInUseError:
        why = f"the gate-agent daemon is using {state_dir}"
    except StateError as exc:
        why = str(exc)
    sys.stderr.write(
        f"gate-agent verify: {why}: the replay cache is checked read-only "
        "(a live code granted here is not remembered for later calls or the daemon)\n"
    )
    return None
