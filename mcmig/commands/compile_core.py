"""``mcmig compile``: build the compiled SIP core with mypyc."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mcmig import compiled
from mcmig.errors import UsageError

# Run in a scratch copy of the package, so that setuptools reads no project
# configuration and nothing is written into the source tree.
_SETUP = """
import sys
from setuptools import setup
from mypyc.build import mypycify
setup(
    name="mcmig-compiled-core",
    script_args=["build_ext", "--inplace"],
    ext_modules=mypycify(sys.argv[2:], group_name=sys.argv[1]),
)
"""


def add_arguments(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "compile",
        help="build the compiled SIP core with mypyc (optional, about half the CPU)",
        description="Compile the modules every SIP message passes through (mcmig/sip, "
        "mcmig/transport, the node runtime and the gateway) into C "
        "extension modules with mypyc, which comes with mypy (pip install "
        "'mcmig[compile]'; needs a C compiler and the Python headers). mcmig uses the "
        "build only while its sources are unchanged, and runs as pure Python otherwise, "
        "or when MCMIG_PURE=1 is set. Does nothing when the build is up to date.",
    )
    parser.add_argument(
        "--status", action="store_true", help="only say whether the compiled core is in use"
    )
    parser.add_argument("--force", action="store_true", help="build even if up to date")
    parser.set_defaults(func=run_compile)


def run_compile(args: argparse.Namespace) -> int:
    reason, _ = compiled.check()
    if args.status:
        print(f"SIP core in this process: {compiled.state()}")
        print(f"build in {compiled.BUILD_DIR}: {reason}")
        return 0 if reason == "compiled" else 1
    if reason == "compiled" and not args.force:
        print(f"compiled core up to date in {compiled.BUILD_DIR}")
        return 0
    started = time.monotonic()
    build(compiled.BUILD_DIR)
    print(
        f"compiled core built in {compiled.BUILD_DIR} "
        f"({len(compiled.sources())} modules, {time.monotonic() - started:.0f} s)"
    )
    return 0


def build(target: Path, package_dir: Path = compiled.PACKAGE_DIR) -> None:
    """Compile the core's sources from ``package_dir`` into ``target``, replacing it whole."""
    try:
        import mypyc  # noqa: F401
    except ImportError:
        raise UsageError(
            "mypyc is not installed: pip install 'mcmig[compile]' (it comes with mypy)"
        ) from None
    with tempfile.TemporaryDirectory(prefix="mcmig-compile-") as scratch:
        copy = Path(scratch) / "mcmig"
        shutil.copytree(
            package_dir, copy, ignore=shutil.ignore_patterns("_compiled*", "__pycache__")
        )
        sources = compiled.sources(copy)
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                _SETUP,
                compiled.GROUP,
                *(f"mcmig/{s.as_posix()}" for s in sources),
            ],
            cwd=scratch,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            tail = (result.stdout + result.stderr).strip().splitlines()[-25:]
            raise UsageError("mypyc failed:\n  " + "\n  ".join(tail))
        staging = target.with_name(target.name + ".new")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        for source in sources:
            built = copy / source.with_suffix(compiled.EXTENSION_SUFFIX)
            shutil.copy2(
                built, staging / f"{compiled.module_name(source)}{compiled.EXTENSION_SUFFIX}"
            )
        shared = (
            Path(scratch)
            / f"{compiled.SHARED_LIBRARY.replace('.', '/')}{compiled.EXTENSION_SUFFIX}"
        )
        shutil.copy2(shared, staging / f"{compiled.SHARED_LIBRARY}{compiled.EXTENSION_SUFFIX}")
        manifest = {
            "extension_suffix": compiled.EXTENSION_SUFFIX,
            "python": sys.version,
            "sources": compiled.digests(copy),
            "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (staging / compiled.MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)
