"""Prints an MSK IAM auth token made by AWS's official Python signer.

The tests compare msk-sidecar's tokens with this one and feed it to the test SASL gateway.
The signing clock is frozen with --time so both signers sign the same instant.

usage: msk_signer.py --region R --access-key A --secret-key S [--session-token T]
                     [--time 2024-01-02T03:04:05Z]
prints: {"token": "...", "expiry_ms": ..., "url": "..."}
"""

import argparse
import base64
import datetime
import json
from unittest import mock

import botocore.auth
from aws_msk_iam_sasl_signer import MSKAuthTokenProvider
from botocore.credentials import CredentialProvider, Credentials


class FixedCredentials(CredentialProvider):
    """A credentials provider that returns the credentials it was given."""

    METHOD = "fixed"

    def __init__(self, credentials):
        super().__init__()
        self._credentials = credentials

    def load(self):
        return self._credentials


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--region", required=True)
    parser.add_argument("--access-key", required=True)
    parser.add_argument("--secret-key", required=True)
    parser.add_argument("--session-token")
    parser.add_argument("--time", help="RFC 3339 UTC signing time; default now")
    args = parser.parse_args()

    credentials = Credentials(args.access_key, args.secret_key, args.session_token)
    provider = FixedCredentials(credentials)
    if args.time:
        at = datetime.datetime.fromisoformat(args.time.replace("Z", "+00:00"))
        at = at.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        with mock.patch.object(botocore.auth, "get_current_datetime", return_value=at):
            token, expiry_ms = MSKAuthTokenProvider.generate_auth_token_from_credentials_provider(
                args.region, provider
            )
    else:
        token, expiry_ms = MSKAuthTokenProvider.generate_auth_token_from_credentials_provider(
            args.region, provider
        )
    url = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("utf-8")
    print(json.dumps({"token": token, "expiry_ms": expiry_ms, "url": url}))


if __name__ == "__main__":
    main()
