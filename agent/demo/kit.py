"""A throwaway trust setup and a set of codes that exercise every kind of decision.

Generated at run time (no key is ever stored in the repository): an issuer key that signs
credentials, an operations key that signs the revocation list, couriers' phone keys,
and the codes a demo clip shows: valid, expired, revoked, wrong gate, replayed (the same
presentation twice) and garbage. Tests and the benchmark build their scenarios from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nacl.signing

from agent.protocol.credential import issue_credential
from agent.protocol.keys import SigningKey, write_keypair
from agent.protocol.presentation import present
from agent.protocol.revocation import RevocationEntry, RevocationList, sign_revocation_list

ISSUER_KID = "demo-issuer"
OPS_KID = "demo-ops"
REVOKED_SUB = "C-9999"
HOUR = 3600.0


@dataclass(frozen=True)
class DemoCode:
    label: str  # what a person sees in the view ("valid", "expired", ...)
    text: str  # the QR text


@dataclass
class DemoKit:
    """Keys on disk under ``root`` (public keys where a config's [trust] expects them)."""

    root: Path
    site: str
    gate: str
    issuer: SigningKey
    ops: SigningKey
    holders: dict[str, SigningKey] = field(default_factory=dict)

    @property
    def issuers_dir(self) -> Path:
        return self.root / "keys" / "issuers"

    @property
    def ops_dir(self) -> Path:
        return self.root / "keys" / "ops"

    def credential(
        self, sub: str, now: float, *, scope: str | None = None, not_before: float | None = None,
        ttl_s: float = 12 * HOUR, holder: bool = True,
    ) -> str:
        """A credential for courier ``sub`` (bound to a phone key unless ``holder`` is False)."""
        holder_pub = bytes(self.holder(sub).verify_key) if holder else None
        return issue_credential(
            self.issuer, kid=ISSUER_KID, sub=sub, scope=[scope or self.site],
            not_before=now - 60 if not_before is None else not_before, ttl_s=ttl_s, now=now,
            holder_pub=holder_pub,
        )

    def presentation(self, credential: str, sub: str, at: float) -> str:
        """What the courier's phone shows at ``at``."""
        return present(credential, self.holder(sub), at=at)

    def holder(self, sub: str) -> SigningKey:
        if sub not in self.holders:
            self.holders[sub] = nacl.signing.SigningKey.generate()
        return self.holders[sub]

    def valid_code(self, sub: str, now: float) -> str:
        return self.presentation(self.credential(sub, now), sub, now)

    def revocation_list(self, version: int, now: float, subs: tuple[str, ...] = (REVOKED_SUB,),
                        ctis: tuple[str, ...] = ()) -> bytes:
        """A signed full list revoking these couriers (all credentials) and credential ids."""
        entries = tuple(RevocationEntry("sub", s) for s in subs) + tuple(
            RevocationEntry("cti", c) for c in ctis
        )
        lst = RevocationList("full", version, None, int(now), entries)
        return sign_revocation_list(lst, self.ops, OPS_KID)

    def config(self, state_dir: Path, **sections: dict[str, Any]) -> dict[str, Any]:
        """A config mapping for this kit (feed to agent.core.config.config_from_mapping)."""
        raw: dict[str, Any] = {
            "gate": {"site": self.site, "id": self.gate},
            "trust": {"keys_dir": str(self.issuers_dir), "ops_keys_dir": str(self.ops_dir)},
            "state": {"dir": str(state_dir)},
            "scanner": {"kind": "none", "dedupe_s": 3.0},
            "door": {"unlock_s": 2.0},
        }
        for name, values in sections.items():
            raw.setdefault(name, {}).update(values)
        return raw


def make_kit(root: Path, site: str = "demo-site", gate: str = "gate-1") -> DemoKit:
    """Generate fresh issuer and operations keys under ``root/keys`` (private keys apart)."""
    issuer = nacl.signing.SigningKey.generate()
    ops = nacl.signing.SigningKey.generate()
    kit = DemoKit(root, site, gate, issuer, ops)
    private = root / "private"
    write_keypair(private, ISSUER_KID, issuer)
    write_keypair(private, OPS_KID, ops)
    for folder, kid in ((kit.issuers_dir, ISSUER_KID), (kit.ops_dir, OPS_KID)):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{kid}.pub").write_bytes((private / f"{kid}.pub").read_bytes())
    return kit


def demo_codes(kit: DemoKit, now: float, *, revoked: bool = True) -> list[DemoCode]:
    """The demo's story, in the order the clip shows it."""
    valid = kit.valid_code("C-1024", now)
    expired_cred = kit.credential("C-2048", now, not_before=now - 2 * 86400, ttl_s=12 * HOUR)
    wrong_cred = kit.credential("C-4096", now, scope="other-site")
    codes = [
        DemoCode("valid (courier C-1024)", valid),
        DemoCode("expired credential", kit.presentation(expired_cred, "C-2048", now)),
    ]
    if revoked:
        revoked_code = kit.valid_code(REVOKED_SUB, now)
        codes.append(DemoCode("revoked courier", revoked_code))
    codes += [
        DemoCode("wrong gate", kit.presentation(wrong_cred, "C-4096", now)),
        DemoCode("garbage", "HELLO-THIS-IS-NOT-A-PASS"),
        DemoCode("replayed screenshot", valid),
        DemoCode("valid (courier C-5120)", kit.valid_code("C-5120", now)),
    ]
    return codes
