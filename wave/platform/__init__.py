"""Seqera Platform: the HTTP client, the pairing records and sockets, and the crypto both sides speak."""
