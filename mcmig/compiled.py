"""The compiled SIP core: mypyc builds of the modules every message passes through.

The same typed sources run as pure Python or, once ``mcmig compile`` has built
them, as C extension modules: the parser, message model, transactions,
transports and node runtime cost about half the CPU that way. The builds sit in
``_compiled/`` inside the package with a manifest of the sources they came
from. They are used only if every one of those sources is unchanged and the
interpreter is the one they were built for: an edited module must never run
as its stale build, and the modules of one build call each other natively,
so it is all of them or none. ``MCMIG_PURE=1`` turns them off.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

PACKAGE_DIR = Path(__file__).resolve().parent
BUILD_DIR = PACKAGE_DIR / "_compiled"
MANIFEST = "manifest.json"
# mypyc puts the code of all modules of one build in one shared library named
# after its group; naming the group keeps that library inside our package.
GROUP = "mcmig._core"
SHARED_LIBRARY = f"{GROUP}__mypyc"
PURE_VARIABLE = "MCMIG_PURE"
EXTENSION_SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]

# Packages compiled whole, and single modules; package __init__ files stay
# Python so that the package imports before the finder is asked for its modules.
_PACKAGES = ("sip", "transport")
# The node runtime, but not inline.py: mypyc's build of its hand-driven
# coroutines crashed the interpreter.
_MODULES = (
    "node/dialogs.py",
    "node/errors.py",
    "node/invite_usage.py",
    "node/refusals.py",
    "node/runtime.py",
    "nodes/b2bua.py",
    "nodes/gateway.py",
    "nodes/hiding.py",
)


def sources(package_dir: Path = PACKAGE_DIR) -> list[Path]:
    """The source files of the compiled core, relative to the package directory."""
    found = [
        path.relative_to(package_dir)
        for name in _PACKAGES
        for path in (package_dir / name).glob("*.py")
        if path.name != "__init__.py"
    ]
    found += [Path(name) for name in _MODULES]
    return sorted(found)


def module_name(source: Path) -> str:
    return ".".join(("mcmig", *source.with_suffix("").parts))


def digests(package_dir: Path = PACKAGE_DIR) -> dict[str, str]:
    """SHA-256 of each source of the compiled core, by module name."""
    return {
        module_name(source): hashlib.sha256((package_dir / source).read_bytes()).hexdigest()
        for source in sources(package_dir)
    }


def check(
    build_dir: Path = BUILD_DIR, package_dir: Path = PACKAGE_DIR
) -> tuple[str, dict[str, Path]]:
    """Why the build in ``build_dir`` can or cannot be used, and its files by module name.

    The files are empty unless the reason is "compiled".
    """
    try:
        manifest = json.loads((build_dir / MANIFEST).read_text())
    except FileNotFoundError:
        return "not built (run mcmig compile)", {}
    except (OSError, ValueError) as exc:
        return f"unreadable build manifest ({exc})", {}
    if not isinstance(manifest, dict) or manifest.get("extension_suffix") != EXTENSION_SUFFIX:
        return "built for another Python (run mcmig compile)", {}
    built = manifest.get("sources")
    if not isinstance(built, dict):
        return "unreadable build manifest (no sources)", {}
    current = digests(package_dir)
    changed = sorted(
        name for name in current.keys() | built.keys() if current.get(name) != built.get(name)
    )
    if changed:
        more = f" and {len(changed) - 1} more" if len(changed) > 1 else ""
        return f"older than its sources ({changed[0]}{more} changed; run mcmig compile)", {}
    files = {name: build_dir / f"{name}{EXTENSION_SUFFIX}" for name in [*current, SHARED_LIBRARY]}
    missing = [name for name, file in files.items() if not file.is_file()]
    if missing:
        return f"incomplete build ({missing[0]} missing; run mcmig compile)", {}
    return "compiled", files


class _CompiledFinder(importlib.abc.MetaPathFinder):
    """Finds the modules of the compiled core in the build directory, and nothing else."""

    def __init__(self, files: dict[str, Path]) -> None:
        self.files = files

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        file = self.files.get(fullname)
        if file is None:
            return None
        loader = importlib.machinery.ExtensionFileLoader(fullname, str(file))
        return importlib.util.spec_from_file_location(fullname, file, loader=loader)


_state = "pure Python: not checked yet"


def install() -> None:
    """Use the compiled core if it matches its sources; called once, by ``import mcmig``."""
    global _state
    if os.environ.get(PURE_VARIABLE, "") not in ("", "0"):
        _state = f"pure Python ({PURE_VARIABLE} is set)"
        return
    reason, files = check()
    if not files:
        # Not printed here: `mcmig up` and the benchmarks say it where it matters,
        # and `mcmig compile` itself imports this before it rebuilds.
        _state = f"pure Python: compiled core {reason}"
        return
    if not any(isinstance(finder, _CompiledFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _CompiledFinder(files))
    _state = "compiled (mypyc)"


def state() -> str:
    """How the SIP core runs in this process, for logs and benchmark results."""
    return _state


def in_use() -> bool:
    return _state.startswith("compiled")
