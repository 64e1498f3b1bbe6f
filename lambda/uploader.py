"""privbucket's uploader: the handler of both functions.

The event is {"author", "title", "store", "seller"}. The object key is
"<epoch-ms>-<author>-<title>", the body is JSON {"author", "title", "seller", "dateTime"},
and the object is tagged store=<store>, as in the original template. Returns the key.

Inside the VPC the PutObject goes through the S3 Gateway endpoint and the bucket policy lets
it in; from the control function (no VPC) the same call is denied by the bucket policy.
"""

import datetime
import json
import os
import time
import urllib.parse

_client = None


def _s3():
    global _client
    if _client is None:
        import boto3  # present in every Lambda Python runtime

        _client = boto3.client("s3")
    return _client


def handler(event, context, s3=None):
    s3 = s3 or _s3()
    bucket = os.environ["PRIVATE_BUCKET"]
    author = event["author"]
    title = event["title"]
    now = datetime.datetime.now(datetime.timezone.utc)
    key = f"{int(time.time() * 1000)}-{author}-{title}"
    body = {
        "author": author,
        "title": title,
        "seller": event.get("seller"),
        "dateTime": now.isoformat().replace("+00:00", "Z"),
    }
    s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=json.dumps(body).encode("utf-8"),
        ContentType="application/json",
        Tagging=urllib.parse.urlencode({"store": event.get("store", "")}),
    )
    return key
