"""``gatectl keys new``: an Ed25519 key pair for an issuer or ops role.

The private key is PKCS#8 PEM with mode 0600; the public key (SubjectPublicKeyInfo
PEM) goes to the gates' ``[trust] keys_dir`` (issuer) or ``ops_keys_dir`` (ops).
The key id (kid) is the file name's stem, so the gate finds a key by name.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from agent.cli.common import EXIT_OK
from agent.protocol.keys import check_kid, write_keypair


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    keys = subparsers.add_parser("keys", help="make signing keys for the centre")
    actions = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    new = actions.add_parser(
        "new",
        help="write DIR/KID.key (private, 0600) and DIR/KID.pub",
        description="Make an Ed25519 key pair. Copy KID.pub to the gates' [trust] keys_dir "
        "(credential issuer) or ops_keys_dir (revocation lists, commands, time).",
    )
    new.add_argument("--kid", required=True, help="key id, also the file name (e.g. issuer-2026)")
    new.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder to write to")
    new.set_defaults(func=_new)


def _new(args: argparse.Namespace) -> int:
    private_path, public_path = write_keypair(args.out, check_kid(args.kid))
    print(private_path)
    print(public_path)
    return EXIT_OK
