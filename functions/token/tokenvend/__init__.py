"""The token-vending function: everything but the HTTP routes, which live in app.py.

Its records (settings, decisions, answers) are `typing.NamedTuple`s rather than frozen dataclasses: both are
immutable, but a dataclass compiles its generated methods when its module is imported, about half a millisecond per
class, which every cold start would pay (docs/benchmarks.md, Cold start).
"""
