"""Branch, tag and Call-ID values: fresh, of the right form, never shared with a fork."""

from __future__ import annotations

import os

from mcmig.sip.ids import new_branch, new_call_id, new_tag, random_hex


def test_values_have_their_form_and_do_not_repeat() -> None:
    branches = {new_branch() for _ in range(5000)}  # crosses several 4 KiB pools
    assert len(branches) == 5000
    assert all(b.startswith("z9hG4bK") and len(b) == 27 for b in branches)
    assert len(new_tag()) == 12 and len(new_call_id()) == 32
    assert len(random_hex(5000)) == 10000  # larger than a pool


def test_a_forked_child_draws_its_own_bytes() -> None:
    random_hex(1)  # the parent's pool holds unread bytes now
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.write(writer, random_hex(16).encode())
        os._exit(0)
    os.close(writer)
    os.waitpid(pid, 0)
    child = os.read(reader, 64).decode()
    os.close(reader)
    assert child != random_hex(16)
