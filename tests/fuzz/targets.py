"""Coverage-guided fuzz targets (atheris, libFuzzer) for everything that reads a peer's
or a user's bytes: the SIP parser, the TCP framer, the migration XML body and the
profile loader. Each target lets through only the exception its code documents;
anything else, or an input that takes longer than libFuzzer's -timeout, is a crash.

    python -m tests.fuzz.targets TARGET CORPUS_DIR [libFuzzer flags]

``tests/fuzz/run.py`` (``./scripts/fuzz``) runs them all and reports figures.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["mcmig"]):
    from mcmig.mc.body import BodyError, decode
    from mcmig.profiles.loader import ProfileError, load_deployment
    from mcmig.sip.errors import SipParseError
    from mcmig.sip.framing import StreamFramer
    from mcmig.sip.parser import parse_message

# Beside copies of the demo keys and certificates, so that a mutated demo profile
# gets as far as loading them.
_PROFILES = Path(tempfile.mkdtemp(prefix="mcmig-fuzz-"))
for folder in ("keys", "certs"):
    shutil.copytree(Path(__file__).parents[2] / "sip_profiles" / folder, _PROFILES / folder)
_PROFILE = _PROFILES / "fuzzed.yaml"


def parser(data: bytes) -> None:
    try:
        message = parse_message(data)
    except SipParseError:
        return
    # What parses must serialize and parse again (the round trip property).
    parse_message(message.serialize())


def framer(data: bytes) -> None:
    """The first byte chooses the segment size, so that messages cross segment ends."""
    if not data:
        return
    size, stream = data[0] % 64 + 1, data[1:]
    framer = StreamFramer()
    try:
        for start in range(0, len(stream), size):
            framer.feed(stream[start : start + size])
            while (frame := framer.next_message()) is not None:
                with contextlib.suppress(SipParseError):
                    parse_message(frame, datagram=False)
    except SipParseError:
        return


def body(data: bytes) -> None:
    try:
        decode(data)
    except BodyError:
        return


def profile(data: bytes) -> None:
    _PROFILE.write_bytes(data)
    try:
        load_deployment(_PROFILE)
    except ProfileError:
        return


TARGETS: dict[str, Callable[[bytes], None]] = {
    "parser": parser,
    "framer": framer,
    "body": body,
    "profile": profile,
}


def main() -> None:
    name = sys.argv[1]
    atheris.Setup([sys.argv[0], *sys.argv[2:]], TARGETS[name])
    atheris.Fuzz()


if __name__ == "__main__":
    main()
