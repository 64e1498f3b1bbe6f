"""Unit test of the handler with a fake S3 client (run: python3 -m unittest discover lambda)."""

import json
import os
import re
import unittest

import uploader

EVENT = {
    "title": "Harry Potter and the Philosopher's Stone",
    "author": "J. K. Rowling",
    "store": "Queen St",
    "seller": "John Doe",
}


class FakeS3:
    def __init__(self):
        self.calls = []

    def put_object(self, **kwargs):
        self.calls.append(kwargs)
        return {"ETag": '"x"'}


class HandlerTest(unittest.TestCase):
    def setUp(self):
        os.environ["PRIVATE_BUCKET"] = "my-private-bucket"

    def test_writes_the_reference_object(self):
        s3 = FakeS3()
        key = uploader.handler(dict(EVENT), None, s3=s3)
        self.assertEqual(len(s3.calls), 1)
        call = s3.calls[0]
        self.assertEqual(call["Bucket"], "my-private-bucket")
        self.assertEqual(call["Key"], key)
        self.assertRegex(key, r"^\d{13}-J\. K\. Rowling-Harry Potter and the Philosopher's Stone$")
        body = json.loads(call["Body"])
        self.assertEqual(body["author"], "J. K. Rowling")
        self.assertEqual(body["title"], EVENT["title"])
        self.assertEqual(body["seller"], "John Doe")
        self.assertNotIn("store", body)
        self.assertRegex(body["dateTime"], r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}")
        self.assertEqual(call["Tagging"], "store=Queen+St")

    def test_tag_values_are_url_encoded(self):
        s3 = FakeS3()
        uploader.handler(dict(EVENT, store="A&B=C"), None, s3=s3)
        self.assertEqual(s3.calls[0]["Tagging"], "store=A%26B%3DC")

    def test_missing_bucket_variable_fails_loudly(self):
        del os.environ["PRIVATE_BUCKET"]
        with self.assertRaises(KeyError):
            uploader.handler(dict(EVENT), None, s3=FakeS3())


if __name__ == "__main__":
    unittest.main()
