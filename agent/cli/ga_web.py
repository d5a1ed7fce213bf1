"""``gate-agent web token``: a fresh one-time token for the installer page, its URL and QR."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from agent.cli.common import EXIT_OK, add_config_option, config_from_args, fail
from agent.core.errors import StateError
from agent.store.owner import become_state_owner


def register(sub: Any) -> None:
    w = sub.add_parser("web", help="the installer page on the gate ([web] in the config)",
                       description="The installer's page: camera preview, relay test, "
                       "inputs, checklist (docs/installing.md).")
    wsub = w.add_subparsers(dest="web_command", metavar="ACTION", required=True)
    t = wsub.add_parser(
        "token", help="print a fresh one-time login token, the page's URL and a QR code",
        description="Writes a new one-time token to [web] token_file (replacing any unused "
        "one) and prints the page's URL with it, as text and as a QR code to scan with a "
        "phone. The first login uses the token up.",
    )
    add_config_option(t)
    t.add_argument("--no-qr", action="store_true", help="print the URL only")
    t.set_defaults(func=cmd_token)


def cmd_token(args: argparse.Namespace) -> int:
    from agent.runtime.web.auth import write_token
    from agent.runtime.web.server import local_address, parse_bind

    config = config_from_args(args)
    path = config.web_token_path()
    become_state_owner(config.state.dir)  # the daemon (its owner) must read and remove it
    try:
        token = write_token(path)
    except OSError as exc:
        raise StateError(f"cannot write the installer token {path}: {exc.strerror or exc}; "
                         "run as the gate-agent user or root") from None
    host, port = parse_bind(config.web.bind)
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 (naming the wildcard, not binding it)
        host = local_address()
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/login#token={token}"
    if not config.web.enabled:
        fail("gate-agent: note: [web] enabled = false in the config: the page is off until "
             "you set enabled = true and restart the daemon (systemctl restart gate-agent)")
    print(f"installer page: http://{shown}:{port}/")
    print(f"one-time token: {token}")
    print(f"login link:     {url}")
    if not args.no_qr:
        import segno

        segno.make(url, error="m").terminal(out=sys.stdout, compact=True)
    return EXIT_OK
