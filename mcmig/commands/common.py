"""Helpers shared by the CLI commands."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from mcmig.errors import UsageError
from mcmig.profiles import Deployment, ProfileError, load_deployment
from mcmig.transport.base import split_hostport

EXIT_OK, EXIT_SIP_FAILURE, EXIT_USAGE = 0, 1, 2


def load(path: str) -> Deployment:
    try:
        return load_deployment(Path(path))
    except ProfileError as exc:
        raise UsageError(str(exc)) from None


def default_state_dir(deployment: Deployment) -> Path:
    return Path("state") / deployment.name


def state_dir_of(args: argparse.Namespace, deployment: Deployment) -> Path:
    return Path(args.state_dir) if args.state_dir else default_state_dir(deployment)


async def until_signalled(started: Callable[[], Awaitable[None]]) -> None:
    """Run ``started`` then wait for SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await started()
    await stop.wait()


def listen_address(text: str) -> tuple[str, int]:
    """``--listen HOST:PORT`` as an IP address and port (port 0: any free one); a
    host name is resolved here, so that a name that does not resolve says so."""
    try:
        host, port = split_hostport(text, default_port=0)
    except ValueError as exc:
        raise UsageError(f"--listen {text}: {exc}") from None
    bare = host[1:-1] if host.startswith("[") else host
    try:
        return str(ipaddress.ip_address(bare)), port
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(bare, port, type=socket.SOCK_DGRAM)
    except (OSError, UnicodeError):
        raise UsageError(f"--listen {text}: cannot resolve the host name {bare!r}") from None
    return str(infos[0][4][0]), port


def fail(message: str) -> None:
    print(f"mcmig: {message}", file=sys.stderr)
