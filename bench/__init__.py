"""Benchmark suite: the real stack on loopback, driven by a load generator.

`make bench` (or `python -m bench`) writes bench/results/<date>.json, .md and .png.
Nothing here is imported by the product.
"""
