#include <cstring>
#include <string>
#include <vector>

#include "nvmf/codec/spec.h"

using namespace castor::nvmf;

// A page with two groups (1: NSIDs 1 and 2, optimized; 2: NSID 3, inaccessible), asked
// for NSID 2 and NSID 3; and the same page cut inside its second group.
extern const std::vector<std::string> kFuzzSeeds = [] {
  std::string page;
  auto put = [&page](const void* p, size_t n) { page.append(static_cast<const char*>(p), n); };
  AnaLogHeader h{};
  h.chgcnt = 7;
  h.ngrps = 2;
  put(&h, sizeof(h));
  AnaGroupDescriptor g1{};
  g1.grpid = 1;
  g1.nnsids = 2;
  g1.state = static_cast<uint8_t>(AnaState::kOptimized);
  put(&g1, sizeof(g1));
  for (uint32_t id : {1u, 2u}) put(&id, 4);
  AnaGroupDescriptor g2{};
  g2.grpid = 2;
  g2.nnsids = 1;
  g2.state = static_cast<uint8_t>(AnaState::kInaccessible);
  put(&g2, sizeof(g2));
  uint32_t three = 3;
  put(&three, 4);
  std::vector<std::string> out;
  for (uint32_t nsid : {2u, 3u}) {
    std::string s(reinterpret_cast<const char*>(&nsid), 4);
    out.push_back(s + page);
  }
  out.push_back(std::string(reinterpret_cast<const char*>(&three), 4) + page.substr(0, page.size() - 10));
  return out;
}();
