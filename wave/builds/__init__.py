"""Container builds on demand: request → build definition → a launcher (local or Kubernetes) → an image.

:class:`wave.builds.service.BuildService` is what the API and the proxy use; everything else is its parts.
The package itself imports nothing, so its modules can import each other without a circle.
"""
