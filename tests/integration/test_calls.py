"""Private calls to a migrated user (PROFILE 4) through every B2BUA on the path."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mcmig.node.dialogs import Dialog
from mcmig.nodes.phone import place_call
from mcmig.nodes.ue import UserEquipment
from mcmig.profiles import load_deployment
from mcmig.sip.peer import TransportAddress
from tests.integration.test_lifecycle import redirecting
from tests.support.lab import Lab
from tests.support.tools import ROOT

ALICE = "sip:alice@primary.example"
BOB = "sip:bob@primary.example"
PRIMARY = TransportAddress("UDP", "127.0.1.10", 5060)


@pytest.fixture
def lab(demo3: Lab) -> Lab:
    return demo3


def _ue(lab: Lab) -> UserEquipment:
    assert lab.running is not None
    return lab.running.clients["alice-ue"]


def _call(lab: Lab, hold: float = 0.2, cancel_after: float | None = None) -> object:
    lab.trace.clear()
    return lab.run(place_call(lab.client, BOB, ALICE, PRIMARY, hold, cancel_after))


def _no_dialogs_left(lab: Lab) -> None:
    assert lab.running is not None
    lab.run(asyncio.sleep(0.1))
    assert {n.name: len(n.dialogs) for n in lab.running.nodes if n.dialogs} == {}
    assert lab.client.dialogs == {}


def test_call_answered_and_hung_up_by_the_caller(lab: Lab) -> None:
    outcome = _call(lab)
    assert str(outcome) == "200 OK; call ended by the caller"
    assert outcome.provisional and 180 in outcome.provisional  # type: ignore[attr-defined]
    assert [who for _, who in _ue(lab).phone.ended] == ["remote"]
    methods = [
        e.label
        for e in lab.trace.entries
        if e.node == "alice-ue" or lab.trace.name_of(e.destination) == "alice-ue"
    ]
    assert methods[:1] == ["INVITE"] and "ACK" in methods and "BYE" in methods
    _no_dialogs_left(lab)


def test_call_hung_up_by_the_migrated_user(lab: Lab) -> None:
    async def scenario() -> object:
        call = asyncio.ensure_future(place_call(lab.client, BOB, ALICE, PRIMARY, hold=10))
        while not _ue(lab).phone.calls:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)
        await _ue(lab).phone.hang_up()
        return await call

    outcome = lab.run(scenario())
    assert str(outcome) == "200 OK; call ended by the callee"
    _no_dialogs_left(lab)


def test_cancel_before_answer_gives_487_everywhere(lab: Lab) -> None:
    _ue(lab).phone.ring_time = 3.0
    outcome = _call(lab, cancel_after=0.4)
    assert outcome.status == 487  # type: ignore[attr-defined]
    lab.run(asyncio.sleep(0.3))
    assert _ue(lab).phone.calls == {}
    statuses = [e.label for e in lab.trace.entries if e.node == "alice-ue"]
    assert "487 Request Terminated" in statuses  # the CANCEL reached alice's client
    _no_dialogs_left(lab)


def test_reinvite_passes_through_and_glare_gets_491(lab: Lab) -> None:
    answered: list[Dialog] = []

    async def scenario() -> tuple[int, int, int]:
        call = asyncio.ensure_future(
            place_call(lab.client, BOB, ALICE, PRIMARY, hold=1.5, on_answer=answered.append)
        )
        while not answered:
            await asyncio.sleep(0.02)
        dialog = answered[0]
        reinvite = lab.client.invite(
            dialog.request("INVITE", b"v=0\r\n", "application/sdp"), dialog.destination
        )
        first = await reinvite.final
        lab.client.send_ack(
            reinvite, dialog.request("ACK", cseq=dialog.local_cseq), dialog.destination
        )
        # glare: both ends re-INVITE at once; at least one side must be told 491
        ue_dialog = next(iter(_ue(lab).phone.calls.values()))
        mine = lab.client.invite(
            dialog.request("INVITE", b"v=0\r\n", "application/sdp"), dialog.destination
        )
        theirs = _ue(lab).node.invite(
            ue_dialog.request("INVITE", b"v=0\r\n", "application/sdp"), ue_dialog.destination
        )
        results = await asyncio.gather(mine.final, theirs.final)
        for out, (d, node) in zip(
            (mine, theirs), ((dialog, lab.client), (ue_dialog, _ue(lab).node)), strict=True
        ):
            if out.final.result().status == 200:
                node.send_ack(out, d.request("ACK", cseq=d.local_cseq), d.destination)
        await call
        return first.status, results[0].status, results[1].status

    first, mine, theirs = lab.run(scenario())
    assert first == 200
    assert 491 in (mine, theirs)
    _no_dialogs_left(lab)


def test_call_after_release_is_480(lab: Lab) -> None:
    assert lab.run(_ue(lab).release()).status == 200
    assert _call(lab).status == 480  # type: ignore[attr-defined]


def test_calls_follow_the_user_to_partner2(lab: Lab) -> None:
    assert lab.run(_ue(lab).migrate("partner2.example")).accepted
    lab.run(asyncio.sleep(0.2))
    assert _call(lab).status == 200  # type: ignore[attr-defined]
    names = {lab.trace.name_of(e.destination) for e in lab.trace.entries} | {
        e.node for e in lab.trace.entries
    }
    assert "partner2-server" in names and "partner-server" not in names
    assert lab.running is not None and lab.running.servers["partner-server"].visitors.all() == []


def test_after_returning_home_calls_stay_inside(lab: Lab) -> None:
    assert lab.run(_ue(lab).migrate("primary.example")).accepted
    lab.run(asyncio.sleep(0.3))  # the old partner's release goes out after the 200
    assert _call(lab).status == 200  # type: ignore[attr-defined]
    names = {lab.trace.name_of(e.destination) for e in lab.trace.entries} | {
        e.node for e in lab.trace.entries
    }
    assert names <= {"client", "primary-server", "alice-ue"}


def test_redirect_mode_answers_302(tmp_path: Path) -> None:
    lab = Lab(
        redirecting(load_deployment(ROOT / "sip_profiles/demo3.yaml")),
        tmp_path,
        client_host="127.0.1.50",
    )
    lab.start()
    try:
        outcome = _call(lab)
        (record,) = lab.registry()
        assert (outcome.status, outcome.contact) == (302, record.temporary_id)  # type: ignore[attr-defined]
    finally:
        lab.close()
