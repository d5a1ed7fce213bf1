"""What every command shares: argument parsing, exit codes, one-line errors, JSON lines.

Exit codes (INTERFACE.md): 0 success, 1 the answer is "no" (denied, refused, nothing
read, a check failed), 2 usage or config error. Errors are one line on stderr, never a
traceback; ``GATE_AGENT_DEBUG=1`` shows the traceback for developers.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from agent.core.config import Config, load_config, resolve_config_path
from agent.core.errors import ConfigError, GateError, KeyFileError, UsageError

EXIT_OK = 0
EXIT_NO = 1
EXIT_USAGE = 2

Handler = Callable[[argparse.Namespace], int]


def add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="config file (default: $GATE_AGENT_CONFIG, else /etc/gate-agent/config.toml)",
    )


def config_from_args(args: argparse.Namespace) -> Config:
    return load_config(resolve_config_path(getattr(args, "config", None)))


def fail(message: str) -> None:
    sys.stderr.write(message.rstrip() + "\n")
    sys.stderr.flush()


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line on stderr, as for every other error.

    Subcommand parsers inherit the class (argparse makes them with ``type(parent)``).
    """

    def error(self, message: str) -> NoReturn:
        hint = ""
        if message.startswith("unrecognized arguments"):
            hint = " (quote a value that contains spaces, such as a code's QR text)"
        self.exit(EXIT_USAGE, f"{self.prog}: {message}{hint}; see {self.prog} --help\n")


def run_cli(
    prog: str, description: str, command_modules: Sequence[str], argv: Sequence[str] | None
) -> int:
    """Build the parser from command modules (each has ``register(subparsers)``) and run."""
    parser = OneLineErrorParser(prog=prog, description=description)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail to stderr")
    parser.add_argument("--version", action="version", version=f"{prog} {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in command_modules:
        importlib.import_module(module_name).register(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    handler: Handler = args.func
    try:
        return handler(args)
    except (ConfigError, UsageError, KeyFileError) as exc:  # what the user gave is wrong
        fail(f"{prog}: {exc}")
        return EXIT_USAGE
    except GateError as exc:
        fail(f"{prog}: {exc}")
        return EXIT_NO
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # a bug: still one clear line, traceback on demand
        if os.environ.get("GATE_AGENT_DEBUG"):
            traceback.print_exc()
        fail(
            f"{prog}: internal error {type(exc).__name__}: {exc} "
            "(set GATE_AGENT_DEBUG=1 for the traceback and report it)"
        )
        return EXIT_NO


def _version() -> str:
    """The installed package's version (what an installer quotes when reporting)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gate-agent")
    except PackageNotFoundError:
        return "unknown (not installed as a package)"


def existing_file(text: str) -> Path:
    """argparse type for input files, with the message users need."""
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text} does not exist or is not a file")
    return path
