"""The ``wave`` client commands (``wave request``, ``wave build``, ``wave status``, ``wave inspect``, …).

Why a client in the same package: CI jobs ask wave for containers, and hand-writing the JSON and base64 of a
container request (let alone a reproducible layer tarball and its three digests) is where they go wrong.
The client talks to a wave server over its control API only; it imports nothing of the server.
"""
