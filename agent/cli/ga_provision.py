"""``gate-agent provision apply``: install a provisioning bundle (the first-boot unit runs it
on /boot/firmware/gate-agent). Exit 0 installed or already installed, 1 refused (nothing
changed), 2 usage (no such folder, service user missing)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

from agent.cli.common import EXIT_NO, EXIT_OK, fail
from agent.core.output import emit_json


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser("provision", help="install a provisioning bundle")
    actions = parser.add_subparsers(dest="provision_command", metavar="ACTION", required=True)
    apply = actions.add_parser(
        "apply", help="verify a bundle and install it into /etc/gate-agent",
        description="Verify BUNDLE_DIR (SHA256SUMS, certificate, config), install it into "
        "ROOT/etc/gate-agent with the service user's owners and modes, and delete its "
        "secrets from BUNDLE_DIR. Re-running is harmless. 安装闸机配置包。")
    apply.add_argument("bundle", type=Path, metavar="BUNDLE_DIR")
    apply.add_argument("--root", type=Path, default=Path("/"), metavar="DIR",
                       help="install under DIR instead of / (an image being prepared)")
    apply.add_argument("--force", action="store_true",
                       help="replace a provisioned gate's identity with another gate's")
    apply.add_argument("--json", action="store_true", help="one JSON object")
    apply.set_defaults(func=_apply)


def _apply(args: argparse.Namespace) -> int:
    # Here, not at the top: every gate-agent command imports this module to register it,
    # and the bundle's certificate checks need cryptography (8 MB resident in `run`).
    from agent.runtime.provision import apply_bundle

    done = apply_bundle(args.bundle, args.root, force=args.force)
    imported = None
    if not done.already and args.root.resolve() == Path("/") and \
            (args.root / "etc/gate-agent/revocations.full").is_file():
        imported = _import_revocations(Path("/etc/gate-agent"))
    if args.json:
        emit_json({"site": done.site, "gate": done.gate, "serial": done.serial,
                   "already": done.already, "installed": done.installed,
                   "removed": done.removed, "problems": done.problems,
                   "revocations_imported": imported})
    else:
        where = args.root / "etc/gate-agent"
        if done.already:
            print(f"provision: {done.site}/{done.gate} (certificate {done.serial}) is already "
                  f"installed in {where}: nothing to do")
        else:
            print(f"provision: installed {done.site}/{done.gate} (certificate {done.serial}) "
                  f"into {where}: {len(done.installed)} files")
        if done.removed:
            print(f"provision: deleted {', '.join(done.removed)} from {args.bundle}")
    for problem in done.problems:
        fail(f"gate-agent: {problem}")
    return EXIT_NO if done.problems or imported is False else EXIT_OK


def _import_revocations(etc: Path) -> bool:
    """The bundle's list through ``revocations apply`` (which runs as the state's owner),
    in a child so this process keeps root for the rest."""
    done = subprocess.run(
        [sys.executable, "-m", "agent.cli.gate_agent", "revocations", "apply",
         str(etc / "revocations.full"), "--config", str(etc / "config.toml")],
        check=False, capture_output=True, text=True)
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr)
    return done.returncode == 0
