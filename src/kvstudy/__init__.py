"""kvstudy: a reproducible pipeline from one config to a paper on KV-cache compression."""

__version__ = "0.1.0"
