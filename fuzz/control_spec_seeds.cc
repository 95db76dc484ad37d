#include <string>
#include <vector>

extern const std::vector<std::string> kFuzzSeeds = {
    R"({"kind":"volume","uuid":"0b6f3e1c-6a52-4f0e-9c5e-2a1d3b4c5d6e","name":"v","size_bytes":1073741824,)"
    R"("replica_count":3,"thin":true,"protocol":"nvmf","topology":{"allowed_nodes":["a"],)"
    R"("preferred_nodes":[],"node_labels":{"zone":"z1"},"spread_labels":["zone"],"pool_labels":{}},)"
    R"("labels":{},"status":"created","replicas":[{"uuid":"r1","node":"a","pool":"p","state":"online",)"
    R"("reason":"","faulted_unix_ms":0},{"uuid":"r2","node":"b","pool":"p","state":"faulted",)"
    R"("reason":"node offline","faulted_unix_ms":1790000000000}],"operation":{"kind":"publish",)"
    R"("started_unix_ms":1},"generation":7,"target":{"node":"a","allowed_hosts":[],"frontend_node":"",)"
    R"("uri":"nvmf://127.0.0.1:8420/nqn.2026-11.io.castor:nexus-0b6f3e1c-6a52-4f0e-9c5e-2a1d3b4c5d6e"}})",
    R"({"kind":"pool","node":"a","name":"p","disks":["file:///d?size_mb=64"],"labels":{},"cluster_size":0,"status":"creating"})",
    R"({"kind":"node","name":"a","labels":{"zone":"z1"},"cordoned":true,"draining":false,"grpc_endpoint":"h:1","nvmf_endpoints":["h:2"],"nbd_endpoint":"","iscsi_endpoint":""})",
    R"({"kind":"volume","uuid":"x","size_bytes":-1,"replica_count":"3","status":"created"})",
    // Integers too large for 64 bits parse as floating point; converting one was
    // undefined behaviour (found by libFuzzer). Each must be refused.
    R"({"kind":"volume","uuid":"x","name":"v","size_bytes":1073741824,"replica_count":3,"status":"created",)"
    R"("replicas":[{"uuid":"r1","node":"a","pool":"p","state":"faulted","reason":"",)"
    R"("faulted_unix_ms":179008888888888800000000}]})",
    R"({"kind":"volume","uuid":"x","size_bytes":1e300,"replica_count":3,"status":"created"})",
    R"({"kind":"volume","uuid":"x","size_bytes":1024,"replica_count":4294967296,"status":"created"})",
    R"({"kind":"pool","node":"a","name":"p","disks":[],"cluster_size":1.5,"status":"creating"})",
    "nvmf://h:1/nqn.2026-11.io.castor:replica-abc?x=1",
    "bdev:///abc",
    "",
    "{",
};
