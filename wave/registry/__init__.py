"""Talking to upstream registries: auth challenges, a token cache and a retrying client."""
