"""The JSON control API: request schemas, thin handlers, routes."""
