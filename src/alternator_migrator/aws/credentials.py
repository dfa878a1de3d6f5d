"""Credentials: static keys, an assumed role, or the AWS default chain (resolved by botocore),
refreshed when they expire. Never logged."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from ..config import AssumeRole, Credentials
from ..errors import EndpointError


@dataclass(frozen=True)
class FrozenCreds:
    access_key: str
    secret_key: str
    token: str | None


class CredentialSource:
    """Static keys, an assumed role, or the AWS default chain; refreshed when they expire."""

    def __init__(
        self,
        static: Credentials | None,
        role: AssumeRole | None,
        region: str | None,
        *,
        label: str = "source",
    ) -> None:
        self._static = static
        self._role = role
        self._region = region
        self._label = label  # which config section, for the fix in an error
        self._lock = threading.Lock()
        self._botocore: Any = None
        self._resolved = False

    def botocore_credentials(self) -> Any:
        """The resolved botocore credentials (refreshing ones for an assumed role), None when
        the default chain finds none; for the boto3 clients this tool still uses (S3)."""
        with self._lock:
            if not self._resolved:
                self._botocore = self._resolve()
                self._resolved = True
        return self._botocore

    def _resolve(self) -> Any:
        import boto3

        if self._static is not None:
            session = boto3.Session(
                aws_access_key_id=self._static.access_key,
                aws_secret_access_key=self._static.secret_key,
                aws_session_token=self._static.session_token,
                region_name=self._region or "us-east-1",
            )
        else:
            session = boto3.Session(region_name=self._region or "us-east-1")
        if self._role is None:
            return session.get_credentials()
        from botocore.credentials import RefreshableCredentials

        sts = session.client("sts")
        role = self._role

        def refresh() -> dict[str, str]:
            r = sts.assume_role(
                RoleArn=role.arn, RoleSessionName=role.session_name or "alternator-migrator"
            )["Credentials"]
            return {
                "access_key": r["AccessKeyId"],
                "secret_key": r["SecretAccessKey"],
                "token": r["SessionToken"],
                "expiry_time": r["Expiration"].isoformat(),
            }

        return RefreshableCredentials.create_from_metadata(
            metadata=refresh(), refresh_using=refresh, method="sts-assume-role"
        )

    def get(self) -> FrozenCreds:
        if self._static is not None and self._role is None:
            s = self._static
            return FrozenCreds(s.access_key, s.secret_key, s.session_token)
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            if self.botocore_credentials() is None:
                raise EndpointError(
                    "no AWS credentials found (no `credentials` in the config and none in the "
                    "environment, profile or instance role); add `credentials: {accessKey, secretKey}`"
                )
            # An assumed role refreshes here, calling STS again when it is about to expire.
            f = self._botocore.get_frozen_credentials()
        except (BotoCoreError, ClientError) as e:
            raise self._credential_error(e) from None
        return FrozenCreds(f.access_key, f.secret_key, f.token)

    def _credential_error(self, e: Exception) -> EndpointError:
        where = f"{self._label}.credentials"
        if self._role is not None:
            return EndpointError(
                f"cannot assume role {self._role.arn} through STS ({type(e).__name__}: {e}); "
                f"check `{where}.assumeRole`, the base credentials and that STS is reachable"
            )
        return EndpointError(
            f"cannot get AWS credentials ({type(e).__name__}: {e}); check `{where}` "
            "or the AWS environment/profile"
        )
