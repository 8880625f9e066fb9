"""Segment Bridge: the domain shared by the ingest, processor and emitter functions."""

PRODUCT_NAME = "segment-bridge"
"""Name carried in `context.integration.name` of every event we send to Segment (echo marker)."""

__version__ = "0.1.0"
