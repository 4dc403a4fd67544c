"""Helpers shared by the CLI commands."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from mcmig.errors import UsageError
from mcmig.profiles import Deployment, ProfileError, load_deployment

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


def fail(message: str) -> None:
    print(f"mcmig: {message}", file=sys.stderr)
