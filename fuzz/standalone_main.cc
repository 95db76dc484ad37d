// Runs a libFuzzer-style target without libFuzzer (GCC builds, the default test suite):
// replays the seed inputs, then `iterations` random mutations of them. Deterministic
// (fixed seed) so a failure reproduces.
//
// `--write-seeds DIR` instead writes the seeds to DIR as files (seed-000, ...), a corpus
// to start libFuzzer from. Clang builds compile this file alone with the seeds as
// `<target>_seeds` (CASTOR_FUZZ_SEEDS_ONLY), which does only that.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#ifndef CASTOR_FUZZ_SEEDS_ONLY
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
#endif
extern const std::vector<std::string> kFuzzSeeds;

namespace {
int write_seeds(const char* dir) {
  for (size_t i = 0; i < kFuzzSeeds.size(); ++i) {
    char name[32];
    std::snprintf(name, sizeof(name), "/seed-%03zu", i);
    const std::string path = std::string(dir) + name;
    const std::string& s = kFuzzSeeds[i];
    std::FILE* f = std::fopen(path.c_str(), "wb");
    if (!f || std::fwrite(s.data(), 1, s.size(), f) != s.size() || std::fclose(f) != 0) {
      std::fprintf(stderr, "cannot write %s\n", path.c_str());
      return 1;
    }
  }
  std::printf("%zu seeds written to %s\n", kFuzzSeeds.size(), dir);
  return 0;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::strcmp(argv[1], "--write-seeds") == 0) return write_seeds(argv[2]);
#ifdef CASTOR_FUZZ_SEEDS_ONLY
  std::fprintf(stderr, "usage: %s --write-seeds DIR\n", argv[0]);
  return 2;
#else
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
#endif
}
