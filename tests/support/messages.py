"""Sample messages shared by the tests."""

from __future__ import annotations

MIGRATION_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\r\n'
    b'<migration xmlns="urn:mcmig:params:xml:ns:migration:1">\r\n'
    b"  <request>\r\n"
    b"    <mc-service-id>sip:alice@primary.example</mc-service-id>\r\n"
    b"    <partner-system>partner.example</partner-system>\r\n"
    b"    <partner-address>sip:127.0.9.2:5060</partner-address>\r\n"
    b"    <temporary-id>sip:t-4f2a@partner.example</temporary-id>\r\n"
    b"  </request>\r\n"
    b"</migration>\r\n"
)


def message_request(body: bytes = MIGRATION_BODY, branch: str = "z9hG4bK776asdhds") -> bytes:
    """A ~600-byte MESSAGE with an XML body, as the PROFILE's legs 3 to 5 carry."""
    head = (
        "MESSAGE sip:alice@primary.example SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.2.10:5060;branch={branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:migration@partner.example>;tag=1928301774\r\n"
        "To: <sip:alice@primary.example>\r\n"
        "Call-ID: a84b4c76e66710\r\n"
        "CSeq: 314159 MESSAGE\r\n"
        "Contact: <sip:127.0.2.10:5060>\r\n"
        "Content-Type: application/vnd.mcmig.migration+xml\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    )
    return head.encode() + body
