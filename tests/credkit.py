"""Credential test kit: fresh keys, a keyring, in-memory caches and code makers.

Keys are generated at run time (never committed). The caches are small real
implementations of the policy's read-only protocols, not mocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import nacl.signing

from agent.gate.policy import Decision, GateContext, decide
from agent.protocol.credential import issue_credential
from agent.protocol.keys import KeyRing, TrustedKey
from agent.protocol.presentation import present

NOW = 1_800_000_000.0
SITE, GATE = "binhai-0001", "north-1"


class MemoryRevocations:
    def __init__(self, ctis: Sequence[str] = (), subs: dict[str, int | None] | None = None):
        self.ctis = set(ctis)
        self.subs = dict(subs or {})

    def is_revoked(self, cti: str, sub: str, iat: int) -> bool:
        if cti in self.ctis:
            return True
        if sub not in self.subs:
            return False
        before = self.subs[sub]
        return before is None or iat < before


class MemoryReplays:
    def __init__(self) -> None:
        self.until: dict[str, float] = {}

    def seen(self, key: str) -> bool:
        return key in self.until

    def remember(self, key: str, until: float) -> None:
        self.until[key] = until


@dataclass
class Kit:
    issuer: nacl.signing.SigningKey = field(default_factory=nacl.signing.SigningKey.generate)
    ops: nacl.signing.SigningKey = field(default_factory=nacl.signing.SigningKey.generate)
    holder: nacl.signing.SigningKey = field(default_factory=nacl.signing.SigningKey.generate)
    kid: str = "iss1"
    ops_kid: str = "ops1"
    revocations: MemoryRevocations = field(default_factory=MemoryRevocations)
    replays: MemoryReplays = field(default_factory=MemoryReplays)
    ctx: GateContext = field(default_factory=lambda: GateContext(SITE, GATE))

    @property
    def keyring(self) -> KeyRing:
        return KeyRing.of(
            TrustedKey(self.kid, bytes(self.issuer.verify_key), "issuer"),
            TrustedKey(self.ops_kid, bytes(self.ops.verify_key), "ops"),
        )

    def credential(
        self,
        *,
        sub: str = "C123456",
        scope: Sequence[str] = (SITE,),
        not_before: float = NOW - 60,
        ttl_s: float = 12 * 3600,
        bound: bool = True,
        key: nacl.signing.SigningKey | None = None,
        kid: str | None = None,
    ) -> str:
        return issue_credential(
            key or self.issuer,
            kid=kid or self.kid,
            sub=sub,
            scope=list(scope),
            not_before=not_before,
            ttl_s=ttl_s,
            now=not_before,
            holder_pub=bytes(self.holder.verify_key) if bound else None,
        )

    def presentation(self, credential: str | None = None, *, at: float = NOW) -> str:
        return present(credential or self.credential(), self.holder, at=at)

    def decide(
        self, text: str, *, now: float = NOW, ctx: GateContext | None = None, **kw: bool
    ) -> Decision:
        return decide(
            text, ctx or self.ctx, self.keyring, self.revocations, self.replays, now, **kw
        )
