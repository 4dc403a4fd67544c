"""What a node's client side raises when a request gets no final response."""


class SipTimeoutError(Exception):
    """A client transaction got no final response before its timeout."""


class SipTransportError(Exception):
    """A request could not be sent, or its connection broke."""
