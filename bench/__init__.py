"""Benchmarks of the token function against floors measured in the same run: `python -m bench` (`make bench`).

Every figure is a ratio against a floor (the same work done with nothing but the bare libraries), with the absolute
numbers, over several runs (min/median/max). The full run rewrites docs/benchmarks.md; `--quick` only proves the
benchmarks still work (tiny iteration counts) and is what CI runs.
"""
