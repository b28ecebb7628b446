"""Pure OCI/Docker image logic: media types, digests, references, platforms and augmentation.

Nothing here does I/O or imports aiohttp; every function takes bytes or dicts and returns bytes or dicts.
"""
