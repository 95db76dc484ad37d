"""A CSI v1 client for tests, built at run time from csi.proto's descriptor set (made by
the build: build/.../proto/csi.desc), so it needs only Debian's python3-grpcio and
python3-protobuf (no generated Python code).

    c = CsiClient("unix:///tmp/x/csi.sock", "/path/csi.desc")
    code, resp = c.call("CreateVolume", {"name": "v", "volume_capabilities": [MOUNT]})
    # code: "OK" or a gRPC code name ("INVALID_ARGUMENT", ...); resp: a dict (proto field
    # names, int64 as strings as proto3 JSON has them) or the error's message.
"""
import grpc
from google.protobuf import descriptor_pb2, json_format, message_factory

IDENTITY = {"GetPluginInfo", "GetPluginCapabilities", "Probe"}

MOUNT_RWO = {"mount": {"fs_type": "ext4"}, "access_mode": {"mode": "SINGLE_NODE_WRITER"}}
BLOCK_RWO = {"block": {}, "access_mode": {"mode": "SINGLE_NODE_WRITER"}}


class CsiClient:
    def __init__(self, target, desc_path):
        fds = descriptor_pb2.FileDescriptorSet()
        with open(desc_path, "rb") as f:
            fds.ParseFromString(f.read())
        self.messages = message_factory.GetMessages(list(fds.file))
        self.channel = grpc.insecure_channel(target)

    def service_of(self, method):
        if method in IDENTITY:
            return "Identity"
        return "Node" if method.startswith("Node") else "Controller"

    def call(self, method, request=None, timeout=120):
        req_cls = self.messages[f"csi.v1.{method}Request"]
        resp_cls = self.messages[f"csi.v1.{method}Response"]
        fn = self.channel.unary_unary(f"/csi.v1.{self.service_of(method)}/{method}",
                                      request_serializer=lambda m: m.SerializeToString(),
                                      response_deserializer=resp_cls.FromString)
        req = json_format.ParseDict(request or {}, req_cls())
        try:
            resp = fn(req, timeout=timeout)
        except grpc.RpcError as e:
            return e.code().name, e.details() or ""
        return "OK", json_format.MessageToDict(resp, preserving_proto_field_name=True)

    def close(self):
        self.channel.close()
