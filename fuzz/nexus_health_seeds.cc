#include <string>
#include <vector>

extern const std::vector<std::string> kFuzzSeeds = {
    R"({"format":"castor-nexus-health","version":1,"nexus":"n0","open":true,"children":{)"
    R"("bdev:///r1":{"healthy":false,"reason":"timed_out","updated_unix_ms":1790000000000,)"
    R"("log":{"segment_blocks":32,"segments":2048,"clean":true,"write_ahead":false,"dirty":[[3,1],[30,2]]}},)"
    R"("nvmf://h:1/nqn.2026-11.io.castor:replica-x":{"healthy":true,"reason":"","updated_unix_ms":1}}})",
    R"({"format":"castor-nexus-health","version":1,"nexus":"n0","children":{}})",
    // Integers too large for 64 bits parse as floating point: refused, never converted.
    R"({"format":"castor-nexus-health","version":1,"children":{"u":{"healthy":false,"updated_unix_ms":1e300}}})",
    R"({"format":"castor-nexus-health","version":1.5,"children":{}})",
    R"({"format":"castor-nexus-health","version":1,"children":{"u":{"healthy":false,"log":{"segment_blocks":-1,)"
    R"("segments":2,"clean":true,"dirty":[[0,99999999999999999999999]]}}}})",
    R"({"format":"castor-nexus-health","version":1,"children":{"u":{"healthy":false,"log":{"segment_blocks":1,)"
    R"("segments":2,"clean":true,"dirty":[7]}}}})",
    R"({"format":"castor-nexus-health","version":2,"children":{}})",
    R"({"format":"other"})",
    "[]",
    "",
    "{",
};
