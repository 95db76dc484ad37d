// Runs a libFuzzer-style target without libFuzzer (GCC builds, the default test suite):
// replays the seed inputs, then `iterations` random mutations of them. Deterministic
// (fixed seed) so a failure reproduces.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
extern const std::vector<std::string> kFuzzSeeds;

int main(int argc, char** argv) {
  long iterations = argc > 1 ? std::atol(argv[1]) : 200000;
  std::mt19937_64 rng(12345);
  for (const auto& s : kFuzzSeeds) {
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(s.data()), s.size());
  }
  const std::string alphabet = std::string(":/?&=%[]0123456789abcdefxyzABC.-_ \x01\xff") + '\0';
  for (long i = 0; i < iterations; ++i) {
    std::string s = kFuzzSeeds[rng() % kFuzzSeeds.size()];
    int edits = 1 + static_cast<int>(rng() % 8);
    for (int e = 0; e < edits; ++e) {
      size_t pos = s.empty() ? 0 : rng() % (s.size() + 1);
      switch (rng() % 4) {
        case 0: s.insert(pos, 1, alphabet[rng() % alphabet.size()]); break;
        case 1: if (pos < s.size()) s.erase(pos, 1 + rng() % 4); break;
        case 2: if (pos < s.size()) s[pos] = static_cast<char>(rng()); break;
        case 3: s = s.substr(0, pos) + kFuzzSeeds[rng() % kFuzzSeeds.size()].substr(0, rng() % 16) + s.substr(pos); break;
      }
    }
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(s.data()), s.size());
  }
  std::printf("fuzz: %zu seeds + %ld mutations, no failure\n", kFuzzSeeds.size(), iterations);
  return 0;
}
