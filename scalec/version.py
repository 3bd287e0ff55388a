"""scalec's version: in generated modules' headers, derived rule files and the rule cache's key."""

__version__ = "0.1.0"
