"""The identity management server (IdMS) of an MC system: OpenID Connect over HTTPS.

TS 33.180's IdMS authenticates the system's users (authorization code with
PKCE) and, for migration, cooperates with the partner system's IdMS: the
primary IdMS exchanges the user's token for one aimed at the partner IdMS
(RFC 8693), and the partner IdMS grants its own access token for it (RFC
7523). Authlib does the OAuth 2.0 and OpenID Connect work; aiohttp is the
HTTP edge.
"""
