"""What a pull of a token does while the token's image is still being built: wait, then fail clearly."""

from __future__ import annotations

from wave.builds.service import BuildService
from wave.errors import ManifestUnknown, NotFound, UpstreamUnavailable
from wave.tokens import ContainerRequest


class BuildGate:
    """Holds a pull until the build behind its token finished (bounded by the build timeout)."""

    def __init__(self, builds: BuildService, timeout: float) -> None:
        self._builds = builds
        self._timeout = timeout

    async def __call__(self, request: ContainerRequest) -> None:
        if request.build_id is None:
            return
        try:
            status = await self._builds.wait(request.build_id, self._timeout)
        except NotFound:
            raise ManifestUnknown(f"build {request.build_id} of {request.image} is unknown "
                                  "(its record may have expired)", detail={"buildId": request.build_id}) from None
        if status.status == "PENDING":
            raise UpstreamUnavailable(f"build {request.build_id} of {request.image} is still running; retry later",
                                      status=503, headers={"Retry-After": "10"})
        if not status.succeeded:
            tail = await self._builds.log_tail(request.build_id)
            reason = status.reason or "the build failed"
            raise ManifestUnknown(f"build {request.build_id} of {request.image} failed: {reason}\n{tail}".rstrip(),
                                  detail={"buildId": request.build_id})
