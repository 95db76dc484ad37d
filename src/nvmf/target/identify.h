#pragma once
// Builders of the data structures a host reads from a controller: Identify Controller,
// Identify Namespace, the namespace identification descriptors, the active namespace
// list and the discovery log page. Pure functions, unit-tested.

#include <cstdint>
#include <string>
#include <vector>

#include "common/uuid.h"
#include "nvmf/codec/spec.h"

namespace castor::nvmf {

struct ControllerIdentity {
  std::string subnqn;
  std::string serial;  // <= 20 ASCII characters, stable per subsystem
  std::string model = "Castor NVMe-oF";
  std::string firmware = "0.1.0";
  uint16_t cntlid = 1;
  bool discovery = false;
  uint8_t mdts = 5;            // max transfer = 2^mdts * 4 KiB (128 KiB)
  uint16_t maxcmd = 128;       // >= the largest queue the host may create
  uint32_t max_nsid = 1024;
  uint32_t incapsule = 8192;   // in-capsule data bytes on I/O queues
  uint16_t kas_100ms = 1;      // keep-alive granularity
  uint8_t aerl = 3;            // 0's based: 4 outstanding AERs
  // VWC, one bit for every namespace of the controller, present and future: set, since
  // any of them may have a cache (frontend::Advertised::volatile_write_cache); a Flush of
  // a namespace without one completes at once.
  bool volatile_write_cache = true;
};

void build_identify_controller(const ControllerIdentity& id, IdentifyController* out);

struct NamespaceIdentity {
  uint32_t nsid = 1;
  uint64_t num_blocks = 0;
  uint32_t block_size = 512;  // power of two
  Uuid uuid;                  // stable for a given bdev; also the NGUID
  // Deallocated blocks read as zeroes (DLFEAT read value 001b), as the block-command
  // rules advertise it (frontend::Advertised::discard_zeroes); else "not reported".
  bool deallocated_reads_zeroes = false;
};

void build_identify_namespace(const NamespaceIdentity& ns, IdentifyNamespace* out);
// CNS 0x03: NGUID (type 2) and UUID (type 3) descriptors, zero-terminated, 4096 bytes.
std::vector<uint8_t> build_ns_descriptors(const NamespaceIdentity& ns);
// CNS 0x02: active NSIDs greater than `after`, ascending, up to 1024, 4096 bytes.
std::vector<uint8_t> build_active_ns_list(std::vector<uint32_t> nsids, uint32_t after);

struct DiscoveryEntry {
  std::string subnqn;
  std::string traddr;
  std::string trsvcid;  // the port, as text
  bool ipv6 = false;
  uint16_t portid = 1;
  bool is_discovery = false;  // the discovery subsystem itself (subtype 3)
};

// The discovery log page: a 1024-byte header then one 1024-byte entry per record.
std::vector<uint8_t> build_discovery_log(uint64_t genctr, const std::vector<DiscoveryEntry>& entries);

// A stable 20-character serial number derived from a UUID.
std::string serial_from_uuid(const Uuid& u);

}  // namespace castor::nvmf
