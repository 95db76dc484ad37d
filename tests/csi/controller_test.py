#!/usr/bin/python3
"""castor-csi --mode controller against a real castor-control and three real engines
(pools on files, volumes placed, published and destroyed for real): every Identity and
Controller call, each repeated where CSI wants idempotency, and every error code the
spec's tables give for what Castor can be asked.

    controller_test.py CASTOR_CONTROL CASTOR_ENGINE CASTORCTL CASTOR_PERF CASTOR_CSI CSI_DESC
"""
import os
import sys
import uuid as uuidlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "control"))
sys.path.insert(0, HERE)
import cluster_harness as h  # noqa: E402
from csi_client import BLOCK_RWO, MOUNT_RWO, CsiClient  # noqa: E402

GIB = 1 << 30
MIB = 1 << 20
CSI = {}


def start_csi(name, control_address, mode="controller", extra=()):
    sock = os.path.join(h.DIR, f"{name}.sock")
    ready = os.path.join(h.DIR, f"{name}.ready")
    args = [CSI["bin"], "--mode", mode, "--endpoint", f"unix://{sock}", "--control", control_address,
            "--control-timeout-ms", "5000", "--ready-file", ready, "--log-level", "debug"] + list(extra)
    proc = h.spawn(name, args)
    h.wait_ready(ready, proc, name)
    return CsiClient(f"unix://{sock}", CSI["desc"])


def expect(c, method, req, want, what):
    code, resp = c.call(method, req)
    h.check(code == want, f"{method} {what}: {want} (got {code}: {str(resp)[:200]})")
    return resp if code == "OK" else None


def cluster():
    ctl = h.Control().start()
    engines = [h.Engine(n, ctl, extra=["--nbd-listen", "127.0.0.1:0"]) for n in ("n1", "n2", "n3")]
    for e in engines:
        e.start()
    h.until("three nodes online", lambda: h.nodes_online(ctl) == 3)
    for e in engines:
        code, p = ctl.call("PUT", f"/v1/nodes/{e.name}/pools/pool",
                           {"disks": [h.disk_uri(e.name, 2048)]})
        h.check(code == 200, f"pool on {e.name} declared ({code})")
    h.until("every pool online", lambda: len([p for p in ctl.call("GET", "/v1/pools")[1].get("pools", [])
                                              if p["status"] == "online"]) == 3)
    return ctl, engines


def scenario_identity():
    ctl, _ = cluster()
    c = start_csi("csi", ctl.address)
    info = expect(c, "GetPluginInfo", {}, "OK", "")
    h.check(info and info["name"] == "io.castor.csi" and info.get("vendor_version"), f"plugin info {info}")
    caps = expect(c, "GetPluginCapabilities", {}, "OK", "")
    kinds = {x.get("service", {}).get("type") for x in caps["capabilities"]} if caps else set()
    h.check({"CONTROLLER_SERVICE", "VOLUME_ACCESSIBILITY_CONSTRAINTS"} <= kinds, f"plugin capabilities {kinds}")
    exp = {x.get("volume_expansion", {}).get("type") for x in caps["capabilities"]} if caps else set()
    h.check("ONLINE" in exp, f"online volume expansion ({exp})")
    probe = expect(c, "Probe", {}, "OK", "with castor-control up")
    h.check(probe and probe.get("ready") is True, f"ready {probe}")
    ccaps = expect(c, "ControllerGetCapabilities", {}, "OK", "")
    rpcs = {x["rpc"]["type"] for x in ccaps["capabilities"]} if ccaps else set()
    h.check({"CREATE_DELETE_VOLUME", "PUBLISH_UNPUBLISH_VOLUME", "LIST_VOLUMES", "GET_CAPACITY",
             "EXPAND_VOLUME", "LIST_VOLUMES_PUBLISHED_NODES", "GET_VOLUME", "SINGLE_NODE_MULTI_WRITER"} <= rpcs,
            f"controller rpcs {rpcs}")
    # A castor-csi whose castor-control does not answer is not ready.
    dead = start_csi("csi-dead", f"127.0.0.1:{h.free_port()}")
    expect(dead, "Probe", {}, "FAILED_PRECONDITION", "with no castor-control")
    expect(dead, "CreateVolume", {"name": "x", "volume_capabilities": [MOUNT_RWO]}, "UNAVAILABLE",
           "with no castor-control")
    # A node-only plugin still answers ControllerGetCapabilities (with none).
    node_only = start_csi("csi-node", ctl.address, mode="node",
                          extra=["--node-name", "n1", "--state-dir", os.path.join(h.DIR, "csi-state")])
    got = expect(node_only, "ControllerGetCapabilities", {}, "OK", "on a node-only plugin")
    h.check(got is not None and not got.get("capabilities"), f"no controller capabilities: {got}")
    expect(node_only, "CreateVolume", {"name": "x", "volume_capabilities": [MOUNT_RWO]}, "UNIMPLEMENTED",
           "on a node-only plugin")
    info = expect(node_only, "NodeGetInfo", {}, "OK", "")
    h.check(info and info["node_id"] == "n1" and
            info["accessible_topology"]["segments"].get("csi.castor.io/node") == "n1", f"node info {info}")


def scenario_create_delete():
    ctl, _ = cluster()
    c = start_csi("csi", ctl.address)
    cap = [MOUNT_RWO]
    rng = {"required_bytes": str(64 * MIB)}
    # Bad requests, no side effects.
    expect(c, "CreateVolume", {"volume_capabilities": cap}, "INVALID_ARGUMENT", "without a name")
    expect(c, "CreateVolume", {"name": "v"}, "INVALID_ARGUMENT", "without capabilities")
    expect(c, "CreateVolume", {"name": "v", "volume_capabilities": [
        {"mount": {}, "access_mode": {"mode": "MULTI_NODE_MULTI_WRITER"}}]}, "INVALID_ARGUMENT",
        "with a multi-node access mode")
    expect(c, "CreateVolume", {"name": "v", "volume_capabilities": [
        {"mount": {"fs_type": "btrfs"}, "access_mode": {"mode": "SINGLE_NODE_WRITER"}}]}, "INVALID_ARGUMENT",
        "with an unsupported file system")
    expect(c, "CreateVolume", {"name": "v", "volume_capabilities": cap, "parameters": {"repl": "9"}},
           "INVALID_ARGUMENT", "with repl=9")
    expect(c, "CreateVolume", {"name": "v", "volume_capabilities": cap, "parameters": {"replicas": "2"}},
           "INVALID_ARGUMENT", "with an unknown parameter")
    expect(c, "CreateVolume", {"name": "v", "volume_capabilities": cap, "mutable_parameters": {"a": "b"}},
           "INVALID_ARGUMENT", "with mutable parameters")
    expect(c, "CreateVolume", {"name": "v", "volume_capabilities": cap,
                               "volume_content_source": {"snapshot": {"snapshot_id": "s"}}},
           "INVALID_ARGUMENT", "from a snapshot")
    expect(c, "CreateVolume", {"name": "v", "volume_capabilities": cap,
                               "capacity_range": {"required_bytes": "-1"}}, "INVALID_ARGUMENT",
           "with negative bytes")
    expect(c, "CreateVolume", {"name": "v", "volume_capabilities": cap,
                               "capacity_range": {"required_bytes": "5000", "limit_bytes": "6000"}},
           "OUT_OF_RANGE", "with no 4 KiB multiple in the range")
    expect(c, "CreateVolume", {"name": "v", "volume_capabilities": cap,
                               "capacity_range": {"required_bytes": str(64 * GIB)}}, "RESOURCE_EXHAUSTED",
           "larger than any pool")
    expect(c, "CreateVolume", {"name": "v", "volume_capabilities": cap, "capacity_range": rng,
                               "parameters": {"repl": "4"}}, "RESOURCE_EXHAUSTED",
           "with more replicas than nodes")
    lst = expect(c, "ListVolumes", {}, "OK", "after the refused requests")
    h.check(lst is not None and not lst.get("entries"), f"no volume left behind: {lst}")

    # Create, idempotent on the name.
    v1 = expect(c, "CreateVolume", {"name": "vol-a", "volume_capabilities": cap, "capacity_range": rng,
                                    "parameters": {"repl": "3", "csi.storage.k8s.io/pvc/name": "x"}},
                "OK", "repl 3")
    vid = v1["volume"]["volume_id"] if v1 else ""
    h.check(v1 and int(v1["volume"]["capacity_bytes"]) == 64 * MIB, f"64 MiB volume {v1}")
    h.check(v1 and v1["volume"]["volume_context"].get("protocol") == "nvmf", "volume_context has the protocol")
    h.check(v1 and v1["volume"]["accessible_topology"][0]["segments"] == {"csi.castor.io/csi-node": "castor"},
            "accessible from every castor-csi node")
    v = h.volume(ctl, vid)
    h.check(v and len(v.get("replicas", [])) == 3 and v.get("name") == "vol-a", f"castor-control has it: {v}")
    for i in range(3):
        again = expect(c, "CreateVolume", {"name": "vol-a", "volume_capabilities": cap,
                                           "capacity_range": {"required_bytes": str(60 * MIB),
                                                              "limit_bytes": str(64 * MIB)},
                                           "parameters": {"repl": "3"}}, "OK", f"again #{i + 1}")
        h.check(again and again["volume"]["volume_id"] == vid, "the same volume")
    expect(c, "CreateVolume", {"name": "vol-a", "volume_capabilities": cap,
                               "capacity_range": {"required_bytes": str(128 * MIB)},
                               "parameters": {"repl": "3"}}, "ALREADY_EXISTS", "same name, larger")
    expect(c, "CreateVolume", {"name": "vol-a", "volume_capabilities": cap, "capacity_range": rng},
           "ALREADY_EXISTS", "same name, other replica count")

    # Names: Kubernetes' pvc-<uuid> gives the volume that UUID; a 128-byte name; a name
    # castor-control cannot take as it is.
    u = str(uuidlib.uuid4())
    pv = expect(c, "CreateVolume", {"name": f"pvc-{u}", "volume_capabilities": [BLOCK_RWO],
                                    "capacity_range": rng}, "OK", "pvc-<uuid>")
    h.check(pv and pv["volume"]["volume_id"] == u, "volume id is the PVC's UUID")
    long_name = "n" * 128
    lv = expect(c, "CreateVolume", {"name": long_name, "volume_capabilities": cap, "capacity_range": rng},
                "OK", "with a 128-byte name")
    odd = "ns/odd name:1"
    ov = expect(c, "CreateVolume", {"name": odd, "volume_capabilities": cap, "capacity_range": rng}, "OK",
                "with '/', ' ' and ':' in the name")
    ov2 = expect(c, "CreateVolume", {"name": odd, "volume_capabilities": cap, "capacity_range": rng}, "OK",
                 "with that name again")
    h.check(ov and ov2 and ov["volume"]["volume_id"] == ov2["volume"]["volume_id"], "same volume for the odd name")
    dflt = expect(c, "CreateVolume", {"name": "no-size", "volume_capabilities": cap,
                                      "parameters": {"thin": "true"}}, "OK", "without a capacity range")
    h.check(dflt and int(dflt["volume"]["capacity_bytes"]) == GIB, "1 GiB by default")

    # ListVolumes pages; a bad token is ABORTED.
    ids = set()
    token = ""
    pages = 0
    while True:
        page = expect(c, "ListVolumes", {"max_entries": 2, "starting_token": token}, "OK", f"page {pages + 1}")
        if not page:
            break
        pages += 1
        h.check(len(page.get("entries", [])) <= 2, "at most max_entries")
        ids |= {e["volume"]["volume_id"] for e in page.get("entries", [])}
        token = page.get("next_token", "")
        if not token or pages > 10:
            break
    h.check(len(ids) == 5 and pages == 3, f"5 volumes in 3 pages ({len(ids)} in {pages})")
    expect(c, "ListVolumes", {"starting_token": "invalid-token"}, "ABORTED", "with a bad token")
    expect(c, "ListVolumes", {"max_entries": -1}, "INVALID_ARGUMENT", "with negative max_entries")

    # ValidateVolumeCapabilities.
    expect(c, "ValidateVolumeCapabilities", {"volume_capabilities": cap}, "INVALID_ARGUMENT", "without an id")
    expect(c, "ValidateVolumeCapabilities", {"volume_id": vid}, "INVALID_ARGUMENT", "without capabilities")
    expect(c, "ValidateVolumeCapabilities", {"volume_id": "fake-vol-id", "volume_capabilities": cap},
           "NOT_FOUND", "of an unknown volume")
    ok = expect(c, "ValidateVolumeCapabilities", {"volume_id": vid, "volume_capabilities": cap}, "OK", "")
    h.check(ok and ok.get("confirmed", {}).get("volume_capabilities"), f"confirmed {ok}")
    no = expect(c, "ValidateVolumeCapabilities", {"volume_id": vid, "volume_capabilities": [
        {"block": {}, "access_mode": {"mode": "MULTI_NODE_READER_ONLY"}}]}, "OK", "multi-node")
    h.check(no is not None and "confirmed" not in no and no.get("message"), f"not confirmed: {no}")

    # GetCapacity.
    capa = expect(c, "GetCapacity", {}, "OK", "with an empty request")
    h.check(capa and int(capa["available_capacity"]) > 0, f"capacity {capa}")
    capa3 = expect(c, "GetCapacity", {"parameters": {"repl": "3"}}, "OK", "for repl 3")
    h.check(capa3 and capa and int(capa3["maximum_volume_size"]) <= int(capa["maximum_volume_size"]),
            "repl 3 fits less")
    one = expect(c, "GetCapacity", {"accessible_topology": {"segments": {"csi.castor.io/node": "n2"}}}, "OK",
                 "of one node")
    h.check(one and capa and int(one["available_capacity"]) < int(capa["available_capacity"]), "one node's pools")

    # ControllerGetVolume.
    got = expect(c, "ControllerGetVolume", {"volume_id": vid}, "OK", "")
    h.check(got and got["volume"]["volume_id"] == vid and not got["status"].get("published_node_ids"),
            "not published")
    expect(c, "ControllerGetVolume", {"volume_id": "fake-vol-id"}, "NOT_FOUND", "of an unknown volume")

    # Delete: every volume, each twice; unknown ids are OK.
    expect(c, "DeleteVolume", {}, "INVALID_ARGUMENT", "without an id")
    for x in [vid, u, lv and lv["volume"]["volume_id"], ov and ov["volume"]["volume_id"],
              dflt and dflt["volume"]["volume_id"]]:
        expect(c, "DeleteVolume", {"volume_id": x}, "OK", f"{x}")
        expect(c, "DeleteVolume", {"volume_id": x}, "OK", f"{x} again")
    expect(c, "DeleteVolume", {"volume_id": "fake-vol-id-0123456789"}, "OK", "of an unknown id")
    lst = expect(c, "ListVolumes", {}, "OK", "after the deletes")
    h.check(lst is not None and not lst.get("entries"), f"no volume left: {lst}")
    h.until("every replica destroyed on the engines",
            lambda: all(p.get("replicas", 0) == 0 for p in ctl.call("GET", "/v1/pools")[1].get("pools", [])))


def scenario_publish_expand():
    ctl, engines = cluster()
    c = start_csi("csi", ctl.address)
    cap = MOUNT_RWO
    made = expect(c, "CreateVolume", {"name": "pub", "volume_capabilities": [cap],
                                      "capacity_range": {"required_bytes": str(64 * MIB)},
                                      "parameters": {"repl": "2"},
                                      "accessibility_requirements": {
                                          "requisite": [{"segments": {"csi.castor.io/node": n}}
                                                        for n in ("n1", "n2", "n3")],
                                          "preferred": [{"segments": {"csi.castor.io/node": "n3"}}]}},
                  "OK", "repl 2, preferring n3")
    vid = made["volume"]["volume_id"] if made else ""
    v = h.volume(ctl, vid)
    h.check(v and "n3" in [r["node"] for r in v.get("replicas", [])], "a replica on the preferred node")
    strict = expect(c, "CreateVolume", {"name": "strict", "volume_capabilities": [cap],
                                        "capacity_range": {"required_bytes": str(64 * MIB)},
                                        "parameters": {"repl": "2"},
                                        "accessibility_requirements": {
                                            "requisite": [{"segments": {"csi.castor.io/node": n}}
                                                          for n in ("n1", "n2")]}}, "OK", "requisite n1, n2")
    sv = h.volume(ctl, strict["volume"]["volume_id"]) if strict else None
    h.check(sv and sorted(r["node"] for r in sv.get("replicas", [])) == ["n1", "n2"],
            "replicas only on the requisite nodes")

    pub = {"volume_id": vid, "node_id": "n1", "volume_capability": cap}
    expect(c, "ControllerPublishVolume", {"node_id": "n1", "volume_capability": cap}, "INVALID_ARGUMENT",
           "without a volume id")
    expect(c, "ControllerPublishVolume", {"volume_id": vid, "volume_capability": cap}, "INVALID_ARGUMENT",
           "without a node id")
    expect(c, "ControllerPublishVolume", {"volume_id": vid, "node_id": "n1"}, "INVALID_ARGUMENT",
           "without a capability")
    expect(c, "ControllerPublishVolume", {**pub, "volume_id": "fake-vol-id"}, "NOT_FOUND", "of an unknown volume")
    expect(c, "ControllerPublishVolume", {**pub, "node_id": "fake-node-id"}, "NOT_FOUND", "to an unknown node")
    h.check(h.volume(ctl, vid).get("target") is None, "the refused publishes left it unpublished")
    first = expect(c, "ControllerPublishVolume", pub, "OK", "to n1")
    uri = first["publish_context"].get("uri", "") if first else ""
    h.check(uri.startswith("nvmf://127.0.0.1:") and vid in uri, f"publish_context uri {uri}")
    for i in range(3):
        again = expect(c, "ControllerPublishVolume", pub, "OK", f"again #{i + 1}")
        h.check(again and again["publish_context"] == first["publish_context"], "the same publish_context")
    expect(c, "ControllerPublishVolume", {**pub, "node_id": "n2"}, "FAILED_PRECONDITION",
           "to a second node (single-node volume)")
    got = expect(c, "ControllerGetVolume", {"volume_id": vid}, "OK", "published")
    h.check(got and got["status"].get("published_node_ids") == ["n1"], f"published for n1: {got}")
    lst = expect(c, "ListVolumes", {}, "OK", "")
    pubs = {e["volume"]["volume_id"]: e.get("status", {}).get("published_node_ids", []) for e in
            (lst or {}).get("entries", [])}
    h.check(pubs.get(vid) == ["n1"], f"ListVolumes shows the published node: {pubs}")
    # The data path works: a verifying writer through the published URI.
    w = h.start_writer("perf-pub", uri, 3, queue_depth=8)
    h.writer_result("perf-pub", w)

    expect(c, "DeleteVolume", {"volume_id": vid}, "FAILED_PRECONDITION", "while published")
    # Online expansion: grown while published and written.
    w = h.start_writer("perf-grow", uri, 4, queue_depth=8)
    ex = expect(c, "ControllerExpandVolume", {"volume_id": vid, "volume_capability": cap,
                                              "capacity_range": {"required_bytes": str(96 * MIB)}}, "OK",
                "to 96 MiB while published, under a writer")
    h.check(ex and int(ex["capacity_bytes"]) == 96 * MIB, f"96 MiB ({ex})")
    h.writer_result("perf-grow", w)
    got = expect(c, "ControllerGetVolume", {"volume_id": vid}, "OK", "after the online expansion")
    h.check(got and int(got["volume"]["capacity_bytes"]) == 96 * MIB and
            got["status"].get("published_node_ids") == ["n1"], "96 MiB and still published")
    expect(c, "ControllerUnpublishVolume", {}, "INVALID_ARGUMENT", "without a volume id")
    expect(c, "ControllerUnpublishVolume", {"volume_id": vid, "node_id": "n2"}, "OK", "from a node it is not on")
    h.check(h.volume(ctl, vid).get("target") is not None, "still published for n1")
    expect(c, "ControllerUnpublishVolume", {"volume_id": vid, "node_id": "n1"}, "OK", "from n1")
    h.check(h.volume(ctl, vid).get("target") is None, "unpublished")
    expect(c, "ControllerUnpublishVolume", {"volume_id": vid, "node_id": "n1"}, "OK", "again")
    expect(c, "ControllerUnpublishVolume", {"volume_id": "fake-vol-id", "node_id": "n1"}, "OK", "unknown volume")

    expect(c, "ControllerExpandVolume", {"capacity_range": {"required_bytes": "1"}}, "INVALID_ARGUMENT",
           "without an id")
    expect(c, "ControllerExpandVolume", {"volume_id": vid}, "INVALID_ARGUMENT", "without a range")
    expect(c, "ControllerExpandVolume", {"volume_id": "fake-vol-id", "capacity_range": {"required_bytes": "4096"}},
           "NOT_FOUND", "of an unknown volume")
    for i in range(2):
        ex = expect(c, "ControllerExpandVolume", {"volume_id": vid, "volume_capability": cap,
                                                  "capacity_range": {"required_bytes": str(128 * MIB)}}, "OK",
                    f"to 128 MiB #{i + 1}")
        h.check(ex and int(ex["capacity_bytes"]) == 128 * MIB and ex.get("node_expansion_required") is True,
                f"128 MiB, node expansion required: {ex}")
    h.check(h.volume(ctl, vid)["size_bytes"] in (128 * MIB, str(128 * MIB)), "castor-control has the new size")
    smaller = expect(c, "ControllerExpandVolume", {"volume_id": vid,
                                                   "capacity_range": {"required_bytes": str(64 * MIB)}}, "OK",
                     "to less than it has")
    h.check(smaller and int(smaller["capacity_bytes"]) == 128 * MIB, "keeps 128 MiB")
    # A volume published over NBD cannot grow while published (NBD has no way to tell).
    nb = expect(c, "CreateVolume", {"name": "over-nbd", "volume_capabilities": [cap],
                                    "capacity_range": {"required_bytes": str(32 * MIB)},
                                    "parameters": {"protocol": "nbd"}}, "OK", "over NBD")
    nid = nb["volume"]["volume_id"] if nb else ""
    pn = expect(c, "ControllerPublishVolume", {"volume_id": nid, "node_id": "n2", "volume_capability": cap}, "OK",
                "over NBD")
    h.check(pn and pn["publish_context"].get("uri", "").startswith("nbd://"), f"an NBD URI ({pn})")
    expect(c, "ControllerExpandVolume", {"volume_id": nid, "capacity_range": {"required_bytes": str(64 * MIB)}},
           "FAILED_PRECONDITION", "of a volume published over NBD")
    expect(c, "ControllerUnpublishVolume", {"volume_id": nid, "node_id": "n2"}, "OK", "over NBD")
    ex = expect(c, "ControllerExpandVolume", {"volume_id": nid, "capacity_range": {"required_bytes": str(64 * MIB)}},
                "OK", "of the NBD volume once unpublished")
    expect(c, "DeleteVolume", {"volume_id": nid}, "OK", "over NBD")
    # Publish again after the resize; then clean up.
    expect(c, "ControllerPublishVolume", pub, "OK", "after the resize")
    expect(c, "ControllerUnpublishVolume", {"volume_id": vid}, "OK", "without a node id")
    for x in (vid, strict and strict["volume"]["volume_id"]):
        expect(c, "DeleteVolume", {"volume_id": x}, "OK", "")


if __name__ == "__main__":
    if len(sys.argv) < 7:
        raise SystemExit(__doc__)
    CSI["bin"], CSI["desc"] = sys.argv[5], sys.argv[6]
    h.init(sys.argv[:5])
    h.run(sys.argv[7:] or ["identity", "create_delete", "publish_expand"], globals())
