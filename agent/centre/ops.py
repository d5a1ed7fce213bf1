"""What the centre's commands share: its ops key and the gates' trust, its broker
settings, and publishing a revocation change right away (``gate-centre revoke``)."""

from __future__ import annotations

import logging

from agent.centre.config import CentreConfig
from agent.centre.session import CtlSession
from agent.centre.store import revocations
from agent.centre.store.db import Database
from agent.protocol.keys import KeyRing, SigningKey, load_keyring, load_signing_key
from agent.sync.broker import BrokerSettings, broker_settings
from agent.sync.link import LinkError
from agent.sync.topics import REVOCATIONS_DELTA, REVOCATIONS_FULL

log = logging.getLogger(__name__)


def ops_key(config: CentreConfig) -> tuple[SigningKey, str]:
    """The centre's private ops key and its kid (the file's stem)."""
    path = config.keys.ops_key
    return load_signing_key(path), path.stem


def ops_trust(config: CentreConfig) -> KeyRing:
    """The gates' ops trust (``[keys] trust_ops_dir``), ops role only."""
    folder = config.keys.trust_ops_dir
    ring = load_keyring(folder, folder)
    return KeyRing.of(*[k for k in list(ring.keys()) if k.role == "ops"])


def broker(config: CentreConfig) -> BrokerSettings:
    m = config.mqtt
    return broker_settings(m.url, ca_file=m.ca_file, cert_file=m.cert_file, key_file=m.key_file,
                           username=m.username, password_file=m.password_file,
                           keepalive_s=m.keepalive_s)


def publish_pending(config: CentreConfig, db: Database, now: float) -> str | None:
    """Publish unpublished deltas and the latest full list; None, or why it failed
    (the running service publishes them on its next sweep)."""
    pending = revocations.unpublished(db)
    full = revocations.latest_full(db)
    if not pending or full is None:
        return None
    try:
        with CtlSession(broker(config), client_prefix="gate-centre") as session:
            for _version, delta in pending:
                session.publish(REVOCATIONS_DELTA, delta)
            session.publish(REVOCATIONS_FULL, full[1], retain=True)
    except (LinkError, OSError) as exc:
        return str(exc)
    revocations.mark_published(db, pending[-1][0], now)
    return None
