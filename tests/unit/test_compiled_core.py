"""The compiled core is used exactly when its build matches its sources."""

from __future__ import annotations

import json
import os
import shutil
import types
from pathlib import Path

import pytest

import mcmig.sip.parser
from mcmig import compiled


def test_this_run_uses_the_compiled_core_unless_told_not_to() -> None:
    # The README's test command builds the core; a suite that silently ran
    # pure Python would test code that no node runs.
    pure = os.environ.get(compiled.PURE_VARIABLE, "") not in ("", "0")
    assert compiled.in_use() is not pure, compiled.state()
    python_function = isinstance(mcmig.sip.parser.parse_message, types.FunctionType)
    assert python_function is pure


@pytest.fixture
def package(tmp_path: Path) -> Path:
    """A copy of the core's sources with a build of empty stand-in files."""
    copy = tmp_path / "mcmig"
    for source in compiled.sources():
        (copy / source).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(compiled.PACKAGE_DIR / source, copy / source)
    build = tmp_path / "build"
    build.mkdir()
    for name in [*compiled.digests(copy), compiled.SHARED_LIBRARY]:
        (build / f"{name}{compiled.EXTENSION_SUFFIX}").write_bytes(b"")
    manifest = {"extension_suffix": compiled.EXTENSION_SUFFIX, "sources": compiled.digests(copy)}
    (build / compiled.MANIFEST).write_text(json.dumps(manifest))
    return copy


def test_a_build_of_the_same_sources_is_used(package: Path) -> None:
    reason, files = compiled.check(package.parent / "build", package)
    assert reason == "compiled"
    assert "mcmig.sip.parser" in files and compiled.SHARED_LIBRARY in files
    assert "mcmig.sip" not in files  # package __init__ files stay Python


def test_one_edited_source_turns_the_whole_build_off(package: Path) -> None:
    with (package / "sip/cseq.py").open("a") as source:
        source.write("# edited\n")
    reason, files = compiled.check(package.parent / "build", package)
    assert files == {}
    assert reason.startswith("older than its sources (mcmig.sip.cseq changed")


def test_a_new_source_turns_the_build_off(package: Path) -> None:
    (package / "sip/newer.py").write_text("X = 1\n")
    reason, files = compiled.check(package.parent / "build", package)
    assert files == {} and "mcmig.sip.newer" in reason


def test_a_missing_file_turns_the_build_off(package: Path) -> None:
    build = package.parent / "build"
    (build / f"{compiled.SHARED_LIBRARY}{compiled.EXTENSION_SUFFIX}").unlink()
    reason, files = compiled.check(build, package)
    assert files == {} and reason.startswith("incomplete build")


def test_a_build_for_another_python_is_not_used(package: Path) -> None:
    build = package.parent / "build"
    manifest = json.loads((build / compiled.MANIFEST).read_text())
    manifest["extension_suffix"] = ".cpython-399-x86_64-linux-gnu.so"
    (build / compiled.MANIFEST).write_text(json.dumps(manifest))
    reason, files = compiled.check(build, package)
    assert files == {} and reason.startswith("built for another Python")


def test_no_build_and_a_broken_manifest(package: Path) -> None:
    build = package.parent / "build"
    (build / compiled.MANIFEST).write_text("{not json")
    assert compiled.check(build, package)[0].startswith("unreadable build manifest")
    (build / compiled.MANIFEST).unlink()
    assert compiled.check(build, package)[0].startswith("not built")
