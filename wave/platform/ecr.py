"""Amazon ECR: the AWS keys a Seqera Platform credential holds, exchanged for a registry login.

ECR takes no long-lived password: ``GetAuthorizationToken`` (signed with the user's keys) answers a token that
is ``AWS:<password>`` in base64, valid some hours. The region is the registry host's
(``<account>.dkr.ecr.<region>.amazonaws.com``); ``WAVE_ECR_ENDPOINT`` points the call elsewhere (a VPC
endpoint, or a test server). boto3 is blocking: the call runs in a thread.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import time
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

_ECR_HOST = re.compile(r"^\d{12}\.dkr\.ecr(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")
DEFAULT_REGION = "us-east-1"


class EcrError(Exception):
    """AWS refused the keys or could not be reached; the message says which, never a key."""


@dataclass(frozen=True)
class EcrLogin:
    username: str
    password: str = field(repr=False)
    expires: float  # epoch seconds


def region_of(host: str, default: str = DEFAULT_REGION) -> str:
    match = _ECR_HOST.match(host.split(":", 1)[0])
    return match[1] if match else default


async def ecr_login(access_key: str, secret_key: str, host: str, *, endpoint: str = "",
                    default_region: str = DEFAULT_REGION, call_timeout: float = 20.0) -> EcrLogin:
    region = region_of(host, default_region)

    def call() -> Any:
        client = boto3.session.Session().client(
            "ecr", region_name=region, aws_access_key_id=access_key, aws_secret_access_key=secret_key,
            endpoint_url=endpoint or None,
            config=Config(connect_timeout=call_timeout, read_timeout=call_timeout, retries={"max_attempts": 2}))
        return client.get_authorization_token()

    try:
        answer = await asyncio.to_thread(call)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "an error")
        raise EcrError(f"AWS refused the keys for ECR in {region} ({code})") from None
    except BotoCoreError as exc:
        raise EcrError(f"AWS ECR in {region} could not be reached ({type(exc).__name__})") from None
    try:
        data = answer["authorizationData"][0]
        username, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
        expires_at = data.get("expiresAt")
    except (KeyError, IndexError, TypeError, binascii.Error, UnicodeDecodeError):
        raise EcrError(f"AWS ECR in {region} sent no usable authorization token") from None
    if not username or not password:
        raise EcrError(f"AWS ECR in {region} sent no usable authorization token")
    expires = expires_at.timestamp() if hasattr(expires_at, "timestamp") else time.time() + 3600
    return EcrLogin(username, password, expires)
