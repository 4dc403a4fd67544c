"""mcmig: SIP signalling for 3GPP MC migration service authorization."""

__version__ = "0.1.0"
