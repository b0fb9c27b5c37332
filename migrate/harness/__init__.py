"""The demo's world: embedded stores, a cluster of the shops, the journey, the cut-over, the demo.

The product packages never import this one (import-linter checks it); it imports them all.
"""
