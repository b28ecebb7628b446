"""wave: a container provisioning service."""

__version__ = "0.1.0"
