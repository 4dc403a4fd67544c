"""What every B2BUA on the migration path shares: sending a leg, mapping its outcome back."""

from __future__ import annotations

from collections.abc import Callable

from mcmig.mc.causes import Cause, failure_response
from mcmig.node.runtime import SipNode, SipTimeoutError, SipTransportError
from mcmig.nodes.hiding import RELAYED_HEADERS
from mcmig.sip.message import Request, Response
from mcmig.sip.peer import TransportAddress
from mcmig.sip.responses import make_response


async def forward(
    node: SipNode,
    upstream: Request,
    downstream: Request,
    destination: TransportAddress,
    timeout: float,
    agent: str,
    relay: Callable[[Request, Response, str], Response] | None = None,
) -> Response:
    """Send ``downstream`` in its own transaction and build the answer to ``upstream``.

    PROFILE 2.5: status, cause body and Warning text pass upstream unchanged
    (a gateway puts its own system's name as the Warning agent). No other
    header of the downstream response crosses. No final response in time
    gives 504 ``timeout``, and so does a downstream 408: never 408 (RFC 4320), never 500.
    """
    try:
        response = await node.send_request(downstream, destination, timeout=timeout)
    except SipTimeoutError:
        return failure_response(
            upstream, Cause.TIMEOUT, f"no answer from the next hop in {timeout:g} s", agent
        )
    except SipTransportError:
        return failure_response(upstream, Cause.TIMEOUT, "the next hop could not be reached", agent)
    if response.status == 408:
        # RFC 4320: a 408 to a non-INVITE request is never passed on; it is the
        # PROFILE's timeout, as if our own leg had timed out.
        return failure_response(upstream, Cause.TIMEOUT, "the next hop timed out", agent)
    if relay is not None:
        return relay(upstream, response, agent)
    return relay_response(upstream, response)


def relay_response(upstream: Request, response: Response) -> Response:
    """Inside a system: status, reason, Warning, cause body and a few headers pass unchanged."""
    headers: list[tuple[str, str]] = []
    for name in RELAYED_HEADERS:
        headers.extend((name, value) for value in response.get_all(name))
    content_type = response.get("Content-Type")
    if response.body and content_type is not None:
        headers.append(("Content-Type", content_type))
    return make_response(
        upstream,
        response.status,
        response.reason,
        headers=headers,
        body=response.body if content_type else b"",
    )


def too_many_hops(request: Request) -> Response | None:
    """483 when a request arrives with Max-Forwards 0 and would need forwarding."""
    if request.max_forwards == 0:
        return make_response(request, 483)
    return None


def next_max_forwards(request: Request) -> int:
    value = request.max_forwards
    return 69 if value is None else value - 1


def shed_like_the_profile(node: SipNode, public_name: str) -> None:
    """Load shedding answers as PROFILE 2.5 says: 503 overloaded, Retry-After, cause body."""
    from mcmig.mc.body import CONTENT_TYPE, MigrationFailure, encode

    node.public_name = public_name
    node.shed_body = encode(
        MigrationFailure(Cause.OVERLOADED.token, "too many requests in progress")
    )
    node.shed_content_type = CONTENT_TYPE
