"""A local stand-in for OpenAI's voice APIs, only as big as the product needs: client secrets, Realtime calls
(the browser's `ek_` form and the server's multipart form), their hangup, GPT-Live sessions, their hangup and
the `session.close` of their sideband, and the `oai-events` channel of each.

It behaves like OpenAI on the wire, strictly, so that the handler, the page and the clients can be tested with
no network. It is never part of the deployed stack. Start it with `server.StandIn`; see `control.py` for the
`/_standin/...` API that tests in another process use.
"""
