"""The ``mcmig`` command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from mcmig import __version__
from mcmig.bench import cli as bench
from mcmig.commands import (
    certs,
    client,
    compile_core,
    credentials,
    demo,
    deploy,
    ladder,
    migrate,
    registry,
    replay,
)
from mcmig.commands.common import EXIT_USAGE
from mcmig.errors import UsageError
from mcmig.node.runtime import SipNode
from mcmig.nodes.responder import Responder
from mcmig.transport.base import split_hostport


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


async def _serve_until_signal(nodes: Sequence[SipNode], ready: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    for node in nodes:
        await node.start()
    print(ready, flush=True)
    await stop.wait()
    for node in nodes:
        await node.stop()


def _cmd_responder(args: argparse.Namespace) -> int:
    host, port = split_hostport(args.listen)
    node = SipNode("responder", host, port)
    Responder(node)
    asyncio.run(_serve_until_signal([node], f"responder ready on {node.address} (UDP and TCP)"))
    return 0


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen = action.choices.get(command)
            if isinstance(chosen, argparse.ArgumentParser):
                return chosen
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mcmig",
        description="SIP signalling for 3GPP MC migration service authorization.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    parser.add_argument("--version", action="version", version=f"mcmig {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    responder = sub.add_parser(
        "responder",
        help="run a UAS that answers MESSAGE and OPTIONS with 200",
        description="Run a UAS that answers every MESSAGE and OPTIONS with 200 OK and "
        "logs one line per request. Listens on UDP and TCP at the same port.",
    )
    responder.add_argument(
        "--listen",
        default="127.0.0.1:5060",
        metavar="HOST:PORT",
        help="address to listen on, [v6]:port for IPv6 (default 127.0.0.1:5060)",
    )
    responder.set_defaults(func=_cmd_responder)

    for module in (
        demo,
        deploy,
        migrate,
        client,
        credentials,
        certs,
        registry,
        ladder,
        replay,
        bench,
        compile_core,
    ):
        module.add_arguments(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        # The command's own usage, not the top level's: it is the command that
        # does not take these (argparse exits 2 here).
        _subparser(parser, args.command).error(f"unrecognized arguments: {' '.join(unknown)}")
    _configure_logging(args.verbose)
    try:
        return int(args.func(args))
    except UsageError as exc:
        print(f"mcmig: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"mcmig: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
