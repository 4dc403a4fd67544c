"""mcmig: SIP signalling for 3GPP MC migration service authorization."""

__version__ = "0.1.0"

from mcmig import compiled as _compiled

_compiled.install()
