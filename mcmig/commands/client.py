"""``mcmig client``, ``mcmig send`` and ``mcmig release``: a user's side of the lifecycle."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from mcmig.commands.common import EXIT_OK, EXIT_SIP_FAILURE, listen_address, load
from mcmig.commands.migrate import password_of
from mcmig.errors import UsageError
from mcmig.idms.errors import LoginError
from mcmig.mc.body import BodyError, service_id_uri
from mcmig.node.runtime import SipNode, SipTimeoutError, SipTransportError
from mcmig.nodes.phone import place_call, warning_text
from mcmig.nodes.topology import entry_server
from mcmig.nodes.ue import UserEquipment, send_data
from mcmig.sip.uri import parse_sip_uri

HELP = "commands: migrate DOMAIN | home | release | send URI TEXT | call URI | hangup | quit"


def add_arguments(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    client = sub.add_parser(
        "client",
        help="run a user's MC service client that migrates on command and stays reachable",
        description="Run a user's MC service client. It answers data and calls, and reads "
        f"commands on standard input: {HELP}.",
    )
    client.add_argument("--profile", required=True, metavar="FILE")
    client.add_argument("--user", required=True, metavar="URI")
    client.add_argument("--listen", default="127.0.0.1:0", metavar="HOST:PORT")
    client.add_argument("--migrate-to", metavar="DOMAIN", help="migrate there once started")
    client.add_argument(
        "--credentials",
        metavar="FILE",
        help="YAML file of MC service ID: password, for the IdMS login before each migration "
        "(or the environment variable MCMIG_PASSWORD)",
    )
    client.set_defaults(func=run_client)

    send = sub.add_parser(
        "send",
        help="send data (a MESSAGE) to an MC service ID",
        description="Send data to an MC service ID through the target's home server, which "
        "forwards it to a migrated user, redirects (302) or refuses (480). Exit 0 on 2xx.",
    )
    send.add_argument("--profile", required=True, metavar="FILE")
    send.add_argument("--from", dest="sender", required=True, metavar="URI")
    send.add_argument("--to", required=True, metavar="URI")
    send.add_argument("--text", required=True)
    send.add_argument("--content-type", default="text/plain")
    send.add_argument("--listen", default="127.0.0.1:0", metavar="HOST:PORT")
    send.set_defaults(func=run_send)

    call = sub.add_parser(
        "call",
        help="place a call (INVITE) to an MC service ID",
        description="Call an MC service ID through its home server, which bridges the call to a "
        "migrated user, redirects (302) or refuses (480). The call is hung up after --hold "
        "seconds unless the callee hangs up first. Signalling only: no media. Exit 0 on 2xx.",
    )
    call.add_argument("--profile", required=True, metavar="FILE")
    call.add_argument("--from", dest="caller", required=True, metavar="URI")
    call.add_argument("--to", required=True, metavar="URI")
    call.add_argument(
        "--hold", type=float, default=2.0, metavar="SECONDS", help="call duration (default 2)"
    )
    call.add_argument(
        "--cancel-after", type=float, metavar="SECONDS", help="CANCEL if not answered by then"
    )
    call.add_argument("--listen", default="127.0.0.1:0", metavar="HOST:PORT")
    call.set_defaults(func=run_call)

    release = sub.add_parser(
        "release",
        help="end a user's migration at a partner",
        description="Tell the partner server that the user leaves; it drops the temporary "
        "identity and tells the primary, which deletes the record if it names that partner.",
    )
    release.add_argument("--profile", required=True, metavar="FILE")
    release.add_argument("--user", required=True, metavar="URI")
    release.add_argument("--partner", required=True, metavar="DOMAIN")
    release.add_argument("--listen", default="127.0.0.1:0", metavar="HOST:PORT")
    release.set_defaults(func=run_release)


def _node(name: str, listen: str) -> SipNode:
    return SipNode(name, *listen_address(listen))


def _check_uri(text: str, what: str) -> None:
    try:
        service_id_uri(text, what)
    except BodyError as exc:
        raise UsageError(exc.reason) from None


def run_send(args: argparse.Namespace) -> int:
    deployment = load(args.profile)
    _check_uri(args.sender, "--from")
    _check_uri(args.to, "--to")

    async def main() -> int:
        node = _node("sender", args.listen)
        await node.start()
        try:
            response = await send_data(
                node, deployment, args.sender, args.to, args.text.encode(), args.content_type
            )
        except (SipTimeoutError, SipTransportError) as exc:
            print(f"no final response: {exc}")
            return EXIT_SIP_FAILURE
        finally:
            await node.stop()
        contact = f" Contact: {response.get('Contact')}" if response.status // 100 == 3 else ""
        warning = warning_text(response) if response.status >= 300 else None
        print(f"{response.status} {response.reason}{f': {warning}' if warning else ''}{contact}")
        return EXIT_OK if response.status // 100 == 2 else EXIT_SIP_FAILURE

    return asyncio.run(main())


def run_call(args: argparse.Namespace) -> int:
    deployment = load(args.profile)
    _check_uri(args.caller, "--from")
    _check_uri(args.to, "--to")
    system = deployment.system(args.to.split("@", 1)[-1])
    if system is None:
        raise UsageError(f"no system for {args.to} in the profile")

    async def main() -> int:
        node = _node("caller", args.listen)
        await node.start()
        try:
            outcome = await place_call(
                node,
                args.caller,
                args.to,
                entry_server(system, parse_sip_uri(args.to)).listen.address(),
                args.hold,
                args.cancel_after,
            )
        finally:
            await node.stop()
        print(outcome)
        return EXIT_OK if outcome.status // 100 == 2 else EXIT_SIP_FAILURE

    return asyncio.run(main())


def run_release(args: argparse.Namespace) -> int:
    deployment = load(args.profile)
    _check_uri(args.user, "--user")

    async def main() -> int:
        node = _node("client", args.listen)
        await node.start()
        try:
            ue = UserEquipment(node, args.user, deployment)
            ue.serving = args.partner.lower()
            response = await ue.release()
        finally:
            await node.stop()
        print(f"{response.status} {response.reason}")
        return EXIT_OK if response.status == 200 else EXIT_SIP_FAILURE

    return asyncio.run(main())


def run_client(args: argparse.Namespace) -> int:
    deployment = load(args.profile)
    _check_uri(args.user, "--user")
    password = None
    if args.credentials or "MCMIG_PASSWORD" in os.environ:
        password = password_of(args.user, args.credentials)

    async def main() -> None:
        node = _node("client", args.listen)
        await node.start()
        ue = UserEquipment(node, args.user, deployment, password)
        ue.listeners.append(lambda line: print(line, flush=True))
        print(f"client {args.user} ready at {ue.contact}; {HELP}", flush=True)
        try:
            if args.migrate_to:
                await _command(ue, node, deployment, ["migrate", args.migrate_to])
            loop = asyncio.get_running_loop()
            while True:
                line = await loop.run_in_executor(None, sys.stdin.readline)
                if not line or line.strip() == "quit":
                    break
                await _command(ue, node, deployment, command_words(line))
        finally:
            await node.stop()

    asyncio.run(main())
    return EXIT_OK


def command_words(line: str) -> list[str]:
    """A line the user typed, as a command and its arguments; the text of `send`
    keeps its inner spaces but not the terminal's line ending."""
    return line.rstrip("\r\n").split(maxsplit=2)


async def _command(ue: UserEquipment, node: SipNode, deployment: object, words: list[str]) -> None:
    try:
        if words[:1] == ["migrate"] and len(words) == 2:
            await ue.migrate(words[1])
        elif words == ["home"]:
            await ue.migrate(ue.home_domain)
        elif words == ["release"]:
            await ue.release()
        elif words == ["hangup"]:
            await ue.phone.hang_up()
        elif words[:1] == ["send"] and len(words) == 3:
            await ue.send(words[1], words[2].encode())
        elif words[:1] == ["call"] and len(words) == 2:
            await ue.call(words[1], hold=2.0)
        elif words:
            ue.tell(HELP)
    except UsageError as exc:
        ue.tell(f"error: {exc}")
    except LoginError:
        pass  # the UE has told what the IdMS said
    except Exception as exc:  # a failed exchange must not end the client
        ue.tell(f"error: {type(exc).__name__}: {exc}")
