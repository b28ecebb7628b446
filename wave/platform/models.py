"""What wave learns from Seqera Platform, as plain values (no I/O): users, tokens, credentials.

Secrets (tokens, passwords) are excluded from ``repr`` so a logged or raised object never shows one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class PlatformUser:
    id: int
    user_name: str
    email: str | None = None


@dataclass(frozen=True)
class TokenPair:
    """A user's Platform access token and (optional) refresh token."""

    access: str = field(repr=False)
    refresh: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class CredentialEntry:
    """One entry of ``GET /credentials``: what it is for, not the secret (that comes from ``/keys``)."""

    id: str
    provider: str
    registry: str
    name: str


@dataclass(frozen=True)
class RegistryKeys:
    """The decrypted payload of a ``container-reg`` credential."""

    username: str
    password: str = field(repr=False)
    registry: str | None = None


@dataclass(frozen=True)
class PlatformIdentity:
    """Who asked for a container, as a token record keeps it: the user, where they signed in, the workspace
    whose credentials serve them, and their Platform tokens *sealed* (never in plain text in the store)."""

    endpoint: str
    user_id: int
    user_name: str
    email: str | None = None
    workspace_id: int | None = None
    workflow_id: str | None = None
    sealed_tokens: str | None = field(default=None, repr=False)

    @property
    def workspace(self) -> str:
        """How messages name the workspace whose credentials are used."""
        return f"workspace {self.workspace_id}" if self.workspace_id is not None else \
            f"the personal workspace of {self.user_name}"

    def to_dict(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "userId": self.user_id, "userName": self.user_name, "email": self.email,
                "workspaceId": self.workspace_id, "workflowId": self.workflow_id, "sealedTokens": self.sealed_tokens}

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> PlatformIdentity:
        return cls(endpoint=record["endpoint"], user_id=int(record["userId"]), user_name=record["userName"],
                   email=record.get("email"), workspace_id=record.get("workspaceId"),
                   workflow_id=record.get("workflowId"), sealed_tokens=record.get("sealedTokens"))
