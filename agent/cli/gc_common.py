"""What the gate-centre command modules share: ``--config`` and opening the store."""

from __future__ import annotations

import argparse

from agent.centre.config import CentreConfig, load_centre_config, resolve_centre_config_path
from agent.centre.store import Database, connect
from agent.centre.store.schema import check_current


def add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE",
                        help="centre config (default: $GATE_CENTRE_CONFIG, "
                             "else /etc/gate-centre/centre.toml)")


def config(args: argparse.Namespace) -> CentreConfig:
    return load_centre_config(resolve_centre_config_path(getattr(args, "config", None)))


def open_store(cfg: CentreConfig) -> Database:
    """The store, refused unless its schema is current (``gate-centre db upgrade``)."""
    db = connect(cfg.store.url)
    try:
        check_current(db)
    except BaseException:
        db.close()
        raise
    return db
