"""The mcmig command line: exit codes, clear errors, a running deployment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from mcmig.commands.migrate import token_for
from mcmig.compiled import PURE_VARIABLE
from mcmig.profiles import load_deployment
from tests.support.tools import (
    ROOT,
    Mcmig,
    bob_to_alice_in_demo3,
    demo_with_tcp_between_peers,
    migrate_in_demo,
    run_mcmig,
)

mcmig = run_mcmig

CREDENTIALS = ("--credentials", "sip_profiles/keys/demo-credentials.yaml")
DEMO = load_deployment(ROOT / "sip_profiles" / "demo.yaml")


def test_help_lists_the_commands() -> None:
    out = mcmig("--help").stdout
    for command in ("up", "migrate", "demo", "keys", "token", "registry", "responder", "bench"):
        assert command in out
    assert "compile" in out


def test_up_help_says_its_connection_caps() -> None:
    out = " ".join(mcmig("up", "--help").stdout.split())
    assert "1024 TCP/TLS connections in all and 64 from one address" in out
    assert "TLS handshake not finished in 5 s" in out
    assert "not configured peers are closed at accept" in out
    assert "open files is raised to the hard limit" in out


def test_compile_status_and_pure_python() -> None:
    status = mcmig("compile", "--status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert "in this process: compiled (mypyc)" in status.stdout
    pure = subprocess.run(
        [sys.executable, "-m", "mcmig.cli", "compile", "--status"],
        cwd=ROOT,
        env={**os.environ, PURE_VARIABLE: "1"},
        capture_output=True,
        text=True,
    )
    # the build is still there and current; this process was told not to use it
    assert pure.returncode == 0
    assert f"in this process: pure Python ({PURE_VARIABLE} is set)" in pure.stdout


def test_migrate_to_a_stopped_partner_says_so_once() -> None:
    # a hand-made token: nothing runs, not even the IdMSs
    token = token_for(DEMO, "partner.example", "sip:alice@primary.example")
    args = ("--profile", "sip_profiles/demo.yaml", "--user", "sip:alice@primary.example")
    args += ("--partner", "partner.example", "--listen", "127.0.2.100:0", "--token", token)
    down = mcmig("migrate", *args)
    assert down.returncode == 1
    assert down.stdout.startswith("503") and "unreachable" in down.stdout
    assert "ICMP" not in down.stderr  # the node's warning would repeat the outcome
    verbose = mcmig("-v", "migrate", *args)
    assert verbose.returncode == 1 and "unreachable (ICMP)" in verbose.stderr


def test_up_migrate_registry(tmp_path: Path) -> None:
    state = tmp_path / "state"
    up = Mcmig("up", "sip_profiles/demo.yaml", "--state-dir", str(state))
    try:
        ok = mcmig(
            "migrate",
            "--profile",
            "sip_profiles/demo.yaml",
            "--user",
            "sip:alice@primary.example",
            "--partner",
            "partner.example",
            "--listen",
            "127.0.2.100:0",
            *CREDENTIALS,
        )
        assert ok.returncode == 0, ok.stderr
        assert ok.stdout.startswith("200 OK")
        refused = mcmig(
            "migrate",
            "--profile",
            "sip_profiles/demo.yaml",
            "--user",
            "sip:bob@primary.example",
            "--partner",
            "partner.example",
            "--listen",
            "127.0.2.100:0",
            *CREDENTIALS,
        )
        assert refused.returncode == 1
        # bob's IdMS refuses the exchange: his profile lets him migrate nowhere
        assert "token exchange refused by https://127.0.1.20:8443: invalid_target" in refused.stdout
        shown = mcmig(
            "registry",
            "show",
            "--profile",
            "sip_profiles/demo.yaml",
            "--node",
            "primary-server",
            "--state-dir",
            str(state),
            "--json",
        )
        (record,) = json.loads(shown.stdout)
        assert record["mc_service_id"] == "sip:alice@primary.example"
        assert record["partner_address"] == "sip:127.0.9.2:5060"
        text = mcmig(
            "registry",
            "show",
            "--profile",
            "sip_profiles/demo.yaml",
            "--node",
            "primary-server",
            "--state-dir",
            str(state),
        )
        assert "sip:alice@primary.example  in partner.example at sip:127.0.9.2:5060" in text.stdout
    finally:
        assert up.stop() == 0  # SIGTERM: clean exit
    assert "Traceback" not in up.stderr


def test_token_issue_and_given_token(tmp_path: Path) -> None:
    token = mcmig(
        "token",
        "issue",
        "--profile",
        "sip_profiles/demo.yaml",
        "--system",
        "partner.example",
        "--sub",
        "sip:erin@primary.example",
        "--ttl",
        "-100",
    )
    assert token.returncode == 0 and token.stdout.count(".") == 2
    up = Mcmig("up", "sip_profiles/direct.yaml", "--state-dir", str(tmp_path))
    try:
        expired = mcmig(
            "migrate",
            "--profile",
            "sip_profiles/direct.yaml",
            "--user",
            "sip:erin@primary.example",
            "--partner",
            "partner.example",
            "--token",
            token.stdout.strip(),
        )
        assert expired.returncode == 1 and "invalid-credentials" in expired.stdout
    finally:
        up.stop()


def test_usage_and_profile_errors_exit_2_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("deployment: x\nsystems: []\n")
    for args in (
        ("up", str(bad)),
        (
            "migrate",
            "--profile",
            "sip_profiles/demo.yaml",
            "--user",
            "alice",
            "--partner",
            "partner.example",
        ),
        (
            "migrate",
            "--profile",
            "sip_profiles/demo.yaml",
            "--user",
            "sip:a@primary.example",
            "--partner",
            "x.example",
        ),
        ("registry", "show", "--profile", "sip_profiles/demo.yaml", "--node", "nope"),
        (
            "token",
            "issue",
            "--profile",
            "sip_profiles/nope.yaml",
            "--system",
            "a",
            "--sub",
            "sip:a@b",
        ),
    ):
        result = mcmig(*args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert result.stderr.startswith("mcmig: "), result.stderr
        assert "Traceback" not in result.stderr
    assert f"{bad}: systems: no systems" in mcmig("up", str(bad)).stderr


def test_keys_generate(tmp_path: Path) -> None:
    out = tmp_path / "k.pem"
    assert mcmig("keys", "generate", "--out", str(out)).returncode == 0
    assert out.stat().st_mode & 0o777 == 0o600
    assert b"PUBLIC KEY" in (tmp_path / "k.pem.pub").read_bytes()
    assert mcmig("keys", "generate", "--out", str(out)).returncode == 2  # no silent overwrite


def test_demo_runs_and_every_case_matches_the_profile() -> None:
    result = mcmig("demo", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    for line in (
        "200 OK",
        "403 migration-not-permitted",
        "403 user-not-permitted-by-partner",
        "404 unknown-user",
        "403 primary-system-not-permitted",
        "403 invalid-credentials",
    ):
        assert line in result.stdout
    assert "(11) 200 OK" in result.stdout and "(4) MESSAGE" in result.stdout
    assert "Traceback" not in result.stderr


def test_demo_of_systems_as_deployed_shows_who_answered_each_case() -> None:
    result = mcmig("demo", "--profile", "sip_profiles/deployed.yaml", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    table = result.stdout.split("\n\n")[1].splitlines()[1:]
    rows = {line[:30].strip(): line.split()[-1] for line in table}
    assert rows["alice may migrate"] == "primary-a"
    assert rows["erin may migrate to partner2"] == "primary-b"
    assert rows["unknown user"] == "primary-idms"
    assert rows["unknown user, hand-made token"] == "primary-gw1"
    assert rows["alice to a third system"] == "gina-ue"
    assert rows["third system calls alice"] == "alice-ue"
    assert rows["reply to her temporary id"] == "alice-ue"
    # the gateway on the primary's side only: steps 1, 3, 5, 8, 9, 11
    assert "(5) MESSAGE" in result.stdout and "(4) MESSAGE" not in result.stdout
    assert "Traceback" not in result.stderr


def test_client_send_release(tmp_path: Path) -> None:
    up = Mcmig("up", "sip_profiles/demo3.yaml", "--state-dir", str(tmp_path))
    try:
        sent = bob_to_alice_in_demo3("send", "--text", "hello")
        assert (sent.returncode, sent.stdout.strip()) == (0, "200 OK"), sent.stderr
        client = subprocess.run(
            [
                sys.executable,
                "-m",
                "mcmig.cli",
                "client",
                "--profile",
                "sip_profiles/demo3.yaml",
                "--user",
                "sip:erin@primary.example",
                "--listen",
                "127.0.2.101:0",
                "--migrate-to",
                "partner2.example",
                *CREDENTIALS,
            ],
            input="bogus\nquit\n",
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )
        assert (
            "migrate to partner2.example: 200 OK" in client.stdout and "commands:" in client.stdout
        )
        # each event once: on standard output, not again as a log line
        assert (client.stdout + client.stderr).count("migrate to partner2.example") == 1
        released = mcmig(
            "release",
            "--profile",
            "sip_profiles/demo3.yaml",
            "--user",
            "sip:alice@primary.example",
            "--partner",
            "partner.example",
            "--listen",
            "127.0.2.102:0",
        )
        assert released.returncode == 0, released.stdout + released.stderr
        unreachable = bob_to_alice_in_demo3("send", "--text", "hello?")
        assert unreachable.returncode == 1 and unreachable.stdout.startswith("480")
        # the refusal's Warning text, as `migrate` prints it
        assert "user-not-reachable: not reachable now (from primary.example)" in unreachable.stdout
        shown = json.loads(
            mcmig(
                "registry",
                "show",
                "--profile",
                "sip_profiles/demo3.yaml",
                "--node",
                "primary-server",
                "--state-dir",
                str(tmp_path),
                "--json",
            ).stdout
        )
        assert [r["mc_service_id"] for r in shown] == ["sip:erin@primary.example"]
    finally:
        assert up.stop() == 0
    assert "Traceback" not in up.stderr


def test_up_on_uvloop_serves_migrations_and_refuses_tls_profiles(tmp_path: Path) -> None:
    """`mcmig up --loop uvloop` (optional) gives the same answers as asyncio's
    loop, the client over UDP and the gateways over TCP to each other, and
    refuses a TLS profile with a clear error rather than stalling handshakes."""
    tls = mcmig("up", "sip_profiles/demo-tls.yaml", "--loop", "uvloop")
    assert tls.returncode == 2
    assert "uses TLS, which mcmig does not run on uvloop yet" in tls.stderr
    with demo_with_tcp_between_peers(f"uvloop-{tmp_path.name}") as tcp_profile:
        name = str(tcp_profile.relative_to(ROOT))
        up = Mcmig(
            "up", name, "--state-dir", str(tmp_path), "--loop", "uvloop", ready="event loop uvloop"
        )
        try:
            for user, expected in (
                ("sip:alice@primary.example", "200 OK"),
                ("sip:bob@primary.example", "token exchange refused"),
            ):
                outcome = mcmig(
                    "migrate",
                    "--profile",
                    name,
                    "--user",
                    user,
                    "--partner",
                    "partner.example",
                    "--listen",
                    "127.0.2.100:0",
                    *CREDENTIALS,
                )
                assert outcome.stdout.startswith(expected), outcome.stdout + outcome.stderr
        finally:
            assert up.stop() == 0
        assert "Traceback" not in up.stderr


def test_up_max_queue_delay_is_checked_and_zero_turns_queue_shedding_off() -> None:
    from mcmig.node.runtime import SipNode
    from mcmig.node.service import shed_late_requests

    bad = mcmig("up", "sip_profiles/demo.yaml", "--max-queue-delay", "-5")
    assert bad.returncode == 2 and "must be 0 or more: -5" in bad.stderr
    off, on = SipNode("off", "127.0.0.1", 0), SipNode("on", "127.0.0.1", 0)
    shed_late_requests([off], 0)
    shed_late_requests([on], 0.15)
    assert (off.max_queue_delay, on.max_queue_delay) == (None, 0.15)


def test_up_stopped_with_a_call_up_hangs_up_first(tmp_path: Path) -> None:
    """SIGTERM to `mcmig up` with a call bridged: the caller gets a BYE before it exits."""
    import asyncio

    from mcmig.node.runtime import SipNode
    from mcmig.nodes.phone import place_call
    from mcmig.sip.peer import TransportAddress

    up = Mcmig("up", "sip_profiles/demo3.yaml", "--state-dir", str(tmp_path))
    loop = asyncio.new_event_loop()
    caller = SipNode("caller", "127.0.1.52", 0)
    answered = asyncio.Event()

    async def call() -> str:
        await caller.start()
        running = asyncio.ensure_future(
            place_call(
                caller,
                "sip:bob@primary.example",
                "sip:alice@primary.example",
                TransportAddress("UDP", "127.0.1.10", 5060),
                hold=20,
                on_answer=lambda dialog: answered.set(),
            )
        )
        await asyncio.wait_for(answered.wait(), 10)
        await asyncio.to_thread(up.stop)  # SIGTERM, and wait for the exit
        outcome = await asyncio.wait_for(running, 5)
        await caller.stop()
        return str(outcome)

    try:
        assert loop.run_until_complete(call()) == "200 OK; call ended by the callee"
        assert up.proc.returncode == 0
    finally:
        up.stop()
        loop.close()


def test_version_and_each_commands_own_usage() -> None:
    from mcmig import __version__

    version = mcmig("--version")
    assert (version.returncode, version.stdout.strip()) == (0, f"mcmig {__version__}")
    bogus = mcmig("up", "sip_profiles/demo.yaml", "--bogus")
    assert bogus.returncode == 2
    assert bogus.stderr.startswith("usage: mcmig up ")
    assert "unrecognized arguments: --bogus" in bogus.stderr


def test_a_busy_address_names_the_address_and_the_node(tmp_path: Path) -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.9.2", 5060))
        up = mcmig("up", "sip_profiles/demo.yaml", "--state-dir", str(tmp_path), timeout=30)
    assert up.returncode == 2
    assert "127.0.9.2:5060 (partner-gw, external): address already in use" in up.stderr
    assert "Errno" not in up.stderr and "Traceback" not in up.stderr


def test_an_unresolvable_listen_address_says_so() -> None:
    done = migrate_in_demo(listen="nowhere.invalid:0")
    assert done.returncode == 2
    assert (
        "--listen nowhere.invalid:0: cannot resolve the host name 'nowhere.invalid'" in done.stderr
    )
    assert "Errno" not in done.stderr


def test_a_typed_command_loses_the_terminals_line_ending() -> None:
    from mcmig.commands.client import command_words

    assert command_words("send sip:bob@primary.example hello there\r\n") == [
        "send",
        "sip:bob@primary.example",
        "hello there",
    ]
    assert command_words("quit\n") == ["quit"]
