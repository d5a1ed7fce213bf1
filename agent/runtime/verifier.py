"""``gate-agent verify``'s engine: the daemon's rulebook on the daemon's state, one shot.

It builds the same :class:`~agent.gate.gatekeeper.Gatekeeper` the controller uses, over
the state folder's revocation list (read only), replay cache, commanded mode and time
floor, and judges with the same decision clock (the timekeeper: untrusted when the
kernel says the clock is not synchronised). So verify answers what the daemon would
answer now, with two documented exceptions: it keeps no rate limit (a batch check of
many codes is not a flood at a door), and ``--at`` pins the clock, taken as trusted.

Only one process writes the state folder. verify takes the daemon's writer lock while
it runs; when the daemon (or another verify) holds it, verify checks the replay cache
read-only and says so on stderr: a live code granted then is remembered only for the
rest of this run, never written behind the daemon's back.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from agent.core.clock import Clock
from agent.core.config import Config
from agent.core.errors import ConfigError, KeyFileError, StateError, StateInUseError, UsageError
from agent.core.reasons import Reason
from agent.gate.gatekeeper import Gatekeeper, Verdict
from agent.gate.modes import ModeKeeper
from agent.gate.policy import Decision
from agent.gate.timekeeper import Probe, Timekeeper, system_clock_synchronised
from agent.protocol.keys import KeyRing, load_keyring
from agent.store.files import WriterLock, ensure_dir
from agent.store.meta import Meta
from agent.store.replay import ReplayCache
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
        self._lock = _writer_lock(config.state.dir)
        self._meta: Meta | None = None
        try:
            if self._lock is not None:
                self._meta = Meta(config.state.dir, clock=clock)
            self.replays = ReplayCache(config.state.dir, clock=clock,
                                       read_only=self._lock is None)
            self.revocations = RevocationStore(config.state.dir, clock=clock, read_only=True)
        except BaseException:
            self._release()
            raise
        timekeeper = None if pinned else Timekeeper(clock, self._meta, probe)
        self.clock: Clock = timekeeper or clock
        self.gatekeeper = Gatekeeper(
            config, keyring, self.revocations, self.replays, trust=timekeeper,
            modes=ModeKeeper(config.policy.mode, self._meta, self.clock.now()),
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
            self._decoder = make_decoder("auto", fallback_interval_s=0)
        texts: list[str] = self._decoder.decode(gray).texts
        return texts

    def close(self) -> None:
        self.replays.close()
        self.revocations.close()
        if self._meta is not None:
            self._meta.close()
        self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None


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
