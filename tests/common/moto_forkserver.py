"""Starts moto servers by forking one process that has already imported moto and set up what
every test's emulator starts the same way (the services privbucket calls, their backends for
the tests' account and region, their web apps). A forked server is a fresh emulator, alone in
its process as one started with `moto_server` is, ready in milliseconds instead of the second
or two moto spends importing and setting up on its first calls.

Protocol, one line each way on stdin and stdout: `start PORT` -> the server's pid;
`kill PID` -> `ok`. When stdin closes (the test run ended, however it ended) every server it
started is killed.
"""
import os
import signal
import sys

os.environ.setdefault("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")

from werkzeug.serving import run_simple  # noqa: E402

from moto.moto_server.werkzeug_app import (  # noqa: E402
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)



def gateway_routes_follow_modify_vpc_endpoint():
    """Real AWS adds the S3 prefix-list route to a route table put on a Gateway endpoint by
    ModifyVpcEndpoint (AddRouteTableIds) and removes it with RemoveRouteTableIds, as it does
    at CreateVpcEndpoint ("Gateway endpoints", Amazon VPC PrivateLink guide: "we add a route to
    each route table you associate with the endpoint"). moto 5.2.5 changes only the list of
    route tables there (moto/ec2/models/vpcs.py, VPCEndPoint.modify); here it also changes the
    routes, as its own CreateVpcEndpoint and DeleteVpcEndpoints do."""
    from moto.ec2.models.vpcs import VPCBackend

    modify = VPCBackend.modify_vpc_endpoint

    def modify_with_routes(self, vpc_id, policy_doc, add_subnets, remove_subnets,
                           remove_route_tables, add_route_tables, add_security_groups,
                           remove_security_groups):
        endpoint = self.describe_vpc_endpoints(vpc_end_point_ids=[vpc_id])[0]
        before = list(endpoint.route_table_ids or [])
        modify(self, vpc_id, policy_doc, add_subnets, remove_subnets, remove_route_tables,
               add_route_tables, add_security_groups, remove_security_groups)
        prefix_list = endpoint.destination_prefix_list_id
        if not prefix_list:
            return
        for table in add_route_tables or []:
            if table not in before:
                self.create_route(table, None, gateway_id=vpc_id,
                                  destination_prefix_list_id=prefix_list)
        for table in remove_route_tables or []:
            if table in before:
                self.delete_route(table, prefix_list)

    VPCBackend.modify_vpc_endpoint = modify_with_routes


gateway_routes_follow_modify_vpc_endpoint()


def bucket_versioning_answers_as_s3_does():
    """S3 answers GetBucketVersioning with a `VersioningConfiguration` document ("GetBucket
    Versioning", Amazon S3 API reference: `<VersioningConfiguration><Status>...`), with no
    `Status` for a bucket whose versioning was never turned on. moto 5.2.5 serializes it under
    the root `GetBucketVersioningResponse`, which the AWS SDK for Rust refuses ("invalid XML
    root"); here it answers with S3's document."""
    from moto.s3.responses import S3Response

    def get_bucket_versioning(self):
        status = self.backend.get_bucket_versioning(self.bucket_name)
        inner = f"<Status>{status}</Status>" if status else ""
        body = ('<?xml version="1.0" encoding="UTF-8"?>\n'
                '<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                f"{inner}</VersioningConfiguration>")
        return 200, {"Content-Type": "application/xml"}, body

    S3Response.get_bucket_versioning = get_bucket_versioning


bucket_versioning_answers_as_s3_does()

def answer_each_request_without_searching_again():
    """Speed only; every answer is the one moto gives. Measured with py-spy over a crash-point
    loop, moto 5.2.5 spent about half its time finding things that never change in a run:
    which backend serves a host (it lists moto's package directory from disk and tries every
    service's URL patterns, twice a request), the botocore service names (a botocore Session
    listing its data directory, at each server's first error answer: moto caches it, but in
    the fork, so every test's server paid it again), and a response class's methods
    (inspect.getmembers, every request). Here the first two are made once in this process,
    before any fork (the warm-up fills the backends), and the third is remembered from its
    first use; moto's request log, which goes to /dev/null, is not written at all."""
    import functools
    import logging

    import moto.backends as backends
    import moto.core.responses as responses
    import moto.core.utils as utils

    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules
    from botocore.session import Session

    service_names = {name.replace("-", ""): name for name in Session().get_available_services()}
    utils.service_name_from_moto_package_name = lambda package: service_names.get(package, package)
    responses.method_names_from_class = functools.cache(responses.method_names_from_class)

    find_backend = DomainDispatcherApplication.get_backend_for_host
    backend_of_host = {}

    def get_backend_for_host(self, host):
        if host not in backend_of_host:
            backend_of_host[host] = find_backend(self, host)
        return backend_of_host[host]

    DomainDispatcherApplication.get_backend_for_host = get_backend_for_host
    logging.getLogger("werkzeug").disabled = True


answer_each_request_without_searching_again()

def make_a_kms_keys_private_key_when_first_used():
    """Speed only. moto makes a 2,048-bit RSA private key for every key it creates, symmetric
    ones too, and uses it only to sign and verify: an eighth of moto's time in the crash loops
    of a stack with its own key. Here it is made the first time something asks for it."""
    import moto.kms.models as kms

    generate = kms.generate_private_key
    kms.generate_private_key = lambda key_spec: key_spec

    def private_key(key):
        made = key.__dict__["_private_key"]
        if isinstance(made, str):
            made = key.__dict__["_private_key"] = generate(made)
        return made

    def set_private_key(key, value):
        key.__dict__["_private_key"] = value

    kms.Key.private_key = property(private_key, set_private_key)


make_a_kms_keys_private_key_when_first_used()

# Each answer goes out as soon as it is written: werkzeug writes the headers and the body in two
# sends, and with Nagle's algorithm the second waits for the proxy to acknowledge the first.
MotoRequestHandler.disable_nagle_algorithm = True

# One read per service, made in this process before any fork: moto loads each service's API
# model and builds its backend on the first request, and every forked server inherits that.
WARM_UP = (
    ("sts", "POST", "/", "Action=GetCallerIdentity&Version=2011-06-15"),
    ("ec2", "POST", "/", "Action=DescribeVpcs&Version=2016-11-15"),
    ("iam", "POST", "/", "Action=ListRoles&Version=2010-05-08"),
    ("s3", "GET", "/", ""),
    ("lambda", "GET", "/2015-03-31/functions/", ""),
    ("kms", "POST", "/", "{}"),
)


def prepared_app():
    from werkzeug.test import Client

    app = DomainDispatcherApplication(create_backend_app)
    app.debug = True
    client = Client(app)
    for service, method, path, body in WARM_UP:
        auth = (f"AWS4-HMAC-SHA256 Credential=testing/20261202/us-east-1/{service}/aws4_request, "
                "SignedHeaders=host, Signature=0")
        headers = {"Authorization": auth, "Host": "127.0.0.1"}
        if service == "kms":
            headers["Content-Type"] = "application/x-amz-json-1.1"
            headers["X-Amz-Target"] = "TrentService.ListKeys"
        elif body:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        status = client.open(path, method=method, data=body, headers=headers).status_code
        if status != 200:
            raise SystemExit(f"warming up {service} answered {status}")
    return app


def serve(app, port):
    os.environ["MOTO_PORT"] = str(port)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    run_simple("127.0.0.1", port, app, threaded=True, request_handler=MotoRequestHandler)


def main():
    app = prepared_app()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the servers
    servers = set()
    print("ready", flush=True)
    try:
        for line in sys.stdin:
            command, arg = line.split()
            if command == "start":
                pid = os.fork()
                if pid == 0:
                    try:
                        serve(app, int(arg))
                    finally:
                        os._exit(0)
                servers.add(pid)
                print(pid, flush=True)
            elif command == "kill":
                pid = int(arg)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                servers.discard(pid)
                print("ok", flush=True)
    finally:
        for pid in servers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


if __name__ == "__main__":
    main()
