"""What every B2BUA on the migration path shares: sending a leg, mapping its outcome back."""

from __future__ import annotations

from mcmig.mc.causes import Cause, failure_response, rewrite_warning_agent
from mcmig.node.runtime import SipNode, SipTimeoutError, SipTransportError
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
    rewrite_agent: bool = False,
) -> Response:
    """Send ``downstream`` in its own transaction and build the answer to ``upstream``.

    PROFILE 2.5: status, cause body and Warning text pass upstream unchanged
    (a gateway puts its own system's name as the Warning agent). No other
    header of the downstream response crosses. No final response in time
    gives 504 ``timeout``, never 408 (RFC 4320).
    """
    try:
        response = await node.send_request(downstream, destination, timeout=timeout)
    except SipTimeoutError:
        return failure_response(
            upstream, Cause.TIMEOUT, f"no answer from the next hop in {timeout:g} s", agent
        )
    except SipTransportError:
        return failure_response(upstream, Cause.TIMEOUT, "the next hop could not be reached", agent)
    return relay_response(upstream, response, agent if rewrite_agent else None)


def relay_response(upstream: Request, response: Response, agent: str | None) -> Response:
    headers: list[tuple[str, str]] = []
    for name in ("Warning", "Accept", "Retry-After", "Allow", "Contact"):
        for value in response.get_all(name):
            if name == "Warning" and agent is not None:
                value = rewrite_warning_agent(value, agent)
            if name == "Contact" and response.status // 100 != 3:
                continue  # only a redirect's Contact is meant for the caller
            headers.append((name, value))
    content_type = response.get("Content-Type")
    if response.body and content_type is not None:
        headers.append(("Content-Type", content_type))
    status = 500 if response.status == 408 else response.status  # RFC 4320: never pass on a 408
    return make_response(
        upstream,
        status,
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
