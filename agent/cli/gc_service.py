"""``gate-centre run`` (the service systemd runs) and ``gate-centre db upgrade``."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from types import FrameType
from typing import TYPE_CHECKING, Any

from agent.centre import ops
from agent.centre.service import CentreService
from agent.centre.store import connect
from agent.centre.store.schema import upgrade
from agent.cli.common import EXIT_OK
from agent.cli.gc_common import add_config, config
from agent.core.sdnotify import Notifier
from agent.protocol.keys import SigningKey

if TYPE_CHECKING:
    from agent.centre.config import CentreConfig
    from agent.centre.web.server import ConsoleServer

log = logging.getLogger("agent.centre")


def register(sub: Any) -> None:
    run = sub.add_parser("run", help="the centre service (systemd runs this)")
    add_config(run)
    run.set_defaults(func=cmd_run)
    db = sub.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    up = db_sub.add_parser("upgrade", help="create or migrate the schema")
    add_config(up)
    up.set_defaults(func=cmd_db_upgrade)


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    cfg = config(args)
    db = connect(cfg.store.url)
    try:
        before, now = upgrade(db)
        where = db.where
    finally:
        db.close()
    if before == now:
        print(f"store {where}: schema version {now}, already current")
    else:
        print(f"store {where}: schema upgraded from version {before} to {now}")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    cfg = config(args)
    key, kid = ops.ops_key(cfg)
    service = CentreService(cfg, ops.broker(cfg), key, kid, ops.ops_trust(cfg))
    stop = threading.Event()

    def on_signal(_sig: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    notifier = Notifier()
    web = _console(cfg, service, key, kid)
    try:
        service.start()
    except BaseException:
        if web is not None:
            web.stop()
        raise
    log.info("gate-centre %s started: store %s, broker %s, share group %s",
             cfg.centre.id, cfg.store.url.split("@")[-1], cfg.mqtt.url, cfg.mqtt.share_group)
    print("started", flush=True)
    notifier.ready(f"ingesting from {cfg.mqtt.url}")
    beat = (notifier.watchdog_s or 20.0) / 3
    last_status = 0.0
    while not stop.wait(min(beat, 5.0)):
        fresh = time.monotonic() - service.counters.heartbeat < 30
        if service.healthy and fresh and (web is None or web.alive):
            notifier.watchdog()  # withheld when a thread died or the writer hangs
        if time.monotonic() - last_status > 30:
            c = service.counters
            notifier.status(f"broker {'up' if service.link.connected else 'DOWN'}, stored "
                            f"{c.stored}, duplicates {c.duplicates}, conflicts {c.conflicts}, "
                            f"store failures {c.store_failures}")
            last_status = time.monotonic()
    notifier.stopping("stopping")
    if web is not None:
        web.stop()
    service.stop()
    return EXIT_OK


def _console(cfg: CentreConfig, service: CentreService, key: SigningKey,
             kid: str) -> ConsoleServer | None:
    """The web console on ``[web] bind``, publishing on the service's broker session."""
    if cfg.web is None:
        return None
    from agent.centre.web.actions import Signer
    from agent.centre.web.server import ConsoleServer

    def publish(topic: str, payload: bytes, retain: bool) -> bool:
        return service.link.publish(topic, payload, retain=retain)

    web = ConsoleServer(cfg, Signer(key, kid, service.trust), publish)
    web.start()
    return web
