"""Benchmarks: Kustos and its peers run side by side in one run; the ratio is the result.

Not tests: nothing here asserts. Each benchmark writes ``bench/results/<name>.json`` with
the measured seconds, the ratios, pass/fail against the targets and the command to
reproduce it. ``synth`` makes the synthetic clusters they run on; ``running`` times one
command; ``scan`` and ``whocan`` are the benchmarks. See ``bench/README.md``.
"""
