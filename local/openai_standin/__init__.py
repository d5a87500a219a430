"""A local stand-in for the OpenAI Realtime API: client secrets, WebRTC calls and the `oai-events` channel.

It behaves like OpenAI on the wire, strictly, so that the handler, the page and the clients can be tested with
no network. It is never part of the deployed stack.
"""
