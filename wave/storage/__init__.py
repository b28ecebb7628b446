"""Object storage (build logs, blob cache): a local directory by default, S3 when configured."""

from wave.storage.base import ObjectStorage, check_key
from wave.storage.factory import open_storage, opened_storage

__all__ = ["ObjectStorage", "check_key", "open_storage", "opened_storage"]
