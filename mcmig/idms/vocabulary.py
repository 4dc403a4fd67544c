"""The names the IdMS and its clients share: grant and token types, scopes, the
client. Kept apart so that a client imports them without the server's libraries."""

from __future__ import annotations

# TS 33.180 / TS 24.482 scopes for the MC services, each with the claim that
# carries the user's identity in that service; "openid" asks for an ID token.
MC_CLAIMS = {
    "3gpp:mc:ptt_service": "mcptt_id",
    "3gpp:mc:data_service": "mcdata_id",
    "3gpp:mc:video_service": "mcvideo_id",
}
MC_SCOPES = tuple(MC_CLAIMS)
SCOPES = ("openid", *MC_SCOPES)
DEFAULT_SCOPE = " ".join(SCOPES)

AUTHORIZATION_CODE = "authorization_code"
REFRESH_TOKEN = "refresh_token"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GRANT_TYPES = (AUTHORIZATION_CODE, REFRESH_TOKEN, TOKEN_EXCHANGE, JWT_BEARER)
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"

CLIENT_ID = "mcmig-client"
# RFC 8252 7.3: a native client's loopback redirect. The headless client reads
# the code from the redirect's Location and never follows it.
REDIRECT_URI = "http://127.0.0.1/callback"
