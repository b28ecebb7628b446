"""Container builds on demand: request → build definition → a launcher (local or Kubernetes) → an image.

:class:`BuildService` is what the API and the proxy use; everything else is its parts.
"""

from wave.builds.definition import BuildDefinition, define_build
from wave.builds.launchers import create_launcher
from wave.builds.records import BuildStatus
from wave.builds.service import BuildEvents, BuildService, BuildTicket

__all__ = [
    "BuildDefinition",
    "BuildEvents",
    "BuildService",
    "BuildStatus",
    "BuildTicket",
    "create_launcher",
    "define_build",
]
