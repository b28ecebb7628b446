"""The ``/v2/`` registry surface: routes, thin handlers, and the manifest and blob services."""
