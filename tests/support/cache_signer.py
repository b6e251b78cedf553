"""Prints an ElastiCache / MemoryDB IAM auth token made with botocore's presigner, the way AWS's
examples (and redis-py's documentation) make it.

The tests compare msk-sidecar's tokens with this one. The signing clock is frozen with --time so
both signers sign the same instant.

usage: cache_signer.py --service elasticache|memorydb --name N --user U --region R
                       --access-key A --secret-key S [--session-token T] [--serverless]
                       --time 2024-01-02T03:04:05Z
prints: the token
"""

import argparse
import datetime
import os
from unittest import mock

# botocore's own SigV4 code (the algorithm AWS documents), not the optional CRT signer, which
# reads the clock itself and would ignore the frozen time.
os.environ["BOTO_DISABLE_CRT"] = "true"
from urllib.parse import ParseResult, urlencode, urlunparse

import botocore.auth
import botocore.session
from botocore.credentials import Credentials
from botocore.model import ServiceId
from botocore.signers import RequestSigner


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--service", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--access-key", required=True)
    parser.add_argument("--secret-key", required=True)
    parser.add_argument("--session-token")
    parser.add_argument("--serverless", action="store_true")
    parser.add_argument("--time", required=True)
    args = parser.parse_args()

    credentials = Credentials(args.access_key, args.secret_key, args.session_token)
    signer = RequestSigner(
        ServiceId(args.service),
        args.region,
        args.service,
        "v4",
        credentials,
        botocore.session.get_session().get_component("event_emitter"),
    )
    query = {"Action": "connect", "User": args.user}
    if args.serverless:
        query["ResourceType"] = "ServerlessCache"
    url = urlunparse(
        ParseResult(scheme="https", netloc=args.name, path="/", query=urlencode(query), params="", fragment="")
    )
    at = datetime.datetime.fromisoformat(args.time.replace("Z", "+00:00"))
    at = at.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=at):
        signed = signer.generate_presigned_url(
            {"method": "GET", "url": url, "body": {}, "headers": {}, "context": {}},
            operation_name="connect",
            expires_in=900,
            region_name=args.region,
        )
    print(signed.removeprefix("https://"))


if __name__ == "__main__":
    main()
