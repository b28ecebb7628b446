"""Launchers: where builds run. ``create_launcher`` picks one from ``WAVE_BUILD_LAUNCHER``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from wave.builds.launchers.base import BuildJob, Launcher, LaunchResult, LogSink

if TYPE_CHECKING:
    from wave.config import Settings


def create_launcher(settings: Settings) -> Launcher:
    if settings.build_launcher == "kubernetes":
        from wave.builds.launchers.kubernetes import KubernetesLauncher

        return KubernetesLauncher(settings)
    from wave.builds.launchers.local import LocalLauncher

    return LocalLauncher(settings)


__all__ = ["BuildJob", "LaunchResult", "Launcher", "LogSink", "create_launcher"]
