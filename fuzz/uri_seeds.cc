#include <string>
#include <vector>

extern const std::vector<std::string> kFuzzSeeds = {
    "malloc:///m0?size_mb=64&blk_size=4096",
    "file:///var/lib/castor/d0.img?size_mb=1024&direct=1",
    "uring:///dev/vdb",
    "fault:///f0?base=m0",
    "nvmf://10.0.0.2:8420/nqn.2026-11.io.castor:replica-1?hostnqn=a%3Ab",
    "nvmf://[::1]:4420/x?y=1.5&z=true",
    "",
    "://",
};
