"""The local system: moto for AWS, a gateway that runs the real handler, and an OpenAI Realtime stand-in."""
