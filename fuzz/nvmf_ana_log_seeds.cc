#include <cstring>
#include <string>
#include <vector>

#include "nvmf/codec/ana_log.h"

using namespace castor::nvmf;

// A page with two groups (1: NSIDs 1 and 2, optimized; 2: NSID 3, inaccessible), asked
// for NSID 2 and NSID 3; the same page cut inside its second group; the page without
// NSID lists (RGO).
extern const std::vector<std::string> kFuzzSeeds = [] {
  const AnaLogGroup groups[] = {{1, AnaState::kOptimized, 7, {1, 2}}, {2, AnaState::kInaccessible, 7, {3}}};
  auto as_string = [](const std::vector<uint8_t>& v) { return std::string(v.begin(), v.end()); };
  const std::string page = as_string(build_ana_log(7, groups));
  auto nsid = [](uint32_t id) { return std::string(reinterpret_cast<const char*>(&id), 4); };
  return std::vector<std::string>{nsid(2) + page, nsid(3) + page, nsid(3) + page.substr(0, page.size() - 10),
                                  nsid(1) + as_string(build_ana_log(7, groups, true))};
}();
