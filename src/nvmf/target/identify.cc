#include "nvmf/target/identify.h"
#include "nvmf/target/reservation_cmds.h"

#include <algorithm>
#include <bit>
#include <cstring>

namespace castor::nvmf {
namespace {
// ASCII fields are space-padded, not NUL-terminated.
void pad(char* dst, size_t n, const std::string& s) {
  std::memset(dst, ' ', n);
  std::memcpy(dst, s.data(), std::min(n, s.size()));
}
void copy_nqn(char* dst, size_t n, const std::string& s) {
  std::memset(dst, 0, n);
  std::memcpy(dst, s.data(), std::min(n - 1, s.size()));
}
}  // namespace

std::string serial_from_uuid(const Uuid& u) { return u.to_string().substr(0, 8) + u.to_string().substr(9, 4) + u.to_string().substr(14, 4) + u.to_string().substr(19, 4); }

void build_identify_controller(const ControllerIdentity& id, IdentifyController* c) {
  std::memset(c, 0, sizeof(*c));
  pad(c->sn, sizeof(c->sn), id.serial);
  pad(c->mn, sizeof(c->mn), id.model);
  pad(c->fr, sizeof(c->fr), id.firmware);
  c->rab = 6;
  // A Castor subsystem may be served by more than one controller, on more than one engine
  // (a volume's nexus moves, keeping its NQN): the host treats the controllers as paths
  // of one subsystem (native multipath) instead of refusing the second.
  // ANA reporting tells it which engine's path to use (group 1 holds every namespace).
  c->cmic = id.discovery ? 0 : kCmicMultiCtrl | kCmicAna;
  c->mdts = id.mdts;
  c->cntlid = id.cntlid;
  c->ver = 0x00010400;
  c->oaes = id.discovery ? (1u << 31) : kOaesNsAttr | kOaesAnaChange;  // discovery log change / notices
  c->ctratt = 1u << 0;                             // 128-bit host identifier
  c->cntrltype = id.discovery ? 2 : 1;
  c->oacs = 0;
  c->acl = 3;
  c->aerl = id.aerl;
  c->frmw = 1 | (1 << 1);  // slot 1 read-only, one slot
  c->lpa = 1 << 1 | 1 << 2;  // command effects log, extended data for Get Log Page
  c->elpe = 0;
  c->kas = id.kas_100ms;
  if (!id.discovery) {
    c->anatt = 10;
    c->anacap = anacap::kOptimized | anacap::kNonOptimized | anacap::kInaccessible | anacap::kPersistentLoss |
                anacap::kChange | anacap::kGroupIdStatic;
    c->anagrpmax = 1;
    c->nanagrpid = 1;
    // The host sizes its ANA log buffer by MNAN (else by nothing): every NSID must fit.
    c->mnan = id.max_nsid;
  }
  c->sqes = 0x66;
  c->cqes = 0x44;
  c->maxcmd = id.maxcmd;
  c->nn = id.discovery ? 0 : id.max_nsid;
  // DSM, Write Zeroes, reservations (bdev::ReservationTable, every namespace)
  c->oncs = id.discovery ? 0 : static_cast<uint16_t>((1 << 2) | (1 << 3) | kOncsReservations);
  c->vwc = id.volatile_write_cache && !id.discovery ? 1 : 0;
  // SGLs supported (no alignment); an SGL may be longer than the data (the excess is
  // ignored); offsets in in-capsule data.
  c->sgls = 1u | (1u << 18) | (1u << 20);
  copy_nqn(c->subnqn, sizeof(c->subnqn), id.subnqn);
  c->ioccsz = (64 + id.incapsule) / 16;
  c->iorcsz = 1;
  c->icdoff = 0;
  c->fcatt = 0;  // dynamic controller model
  c->msdbd = 1;
}

void build_identify_namespace(const NamespaceIdentity& ns, IdentifyNamespace* n) {
  std::memset(n, 0, sizeof(*n));
  n->nsze = n->ncap = n->nuse = ns.num_blocks;
  n->nsfeat = 0;
  n->nlbaf = 0;
  n->flbas = 0;
  // Write Zeroes accepts DEAC (bit 3); what a deallocated block reads as (bits 2:0): 001b
  // zeroes, or 000b not reported.
  n->dlfeat = static_cast<uint8_t>(1 << 3 | (ns.deallocated_reads_zeroes ? 1 : 0));
  n->nmic = 1;              // may be attached to more than one controller (paths of one namespace)
  n->rescap = kRescap;      // the six reservation types, IEKEY as in NVMe 1.3+; not persistent
  n->anagrpid = 1;          // every namespace of a subsystem is in ANA group 1
  std::memcpy(n->nguid, ns.uuid.bytes.data(), 16);
  n->lbaf[0].lbads = static_cast<uint8_t>(std::countr_zero(ns.block_size));
}

std::vector<uint8_t> build_ns_descriptors(const NamespaceIdentity& ns) {
  std::vector<uint8_t> out(4096, 0);
  size_t p = 0;
  for (uint8_t type : {uint8_t{2}, uint8_t{3}}) {  // NGUID, UUID
    out[p] = type;
    out[p + 1] = 16;
    std::memcpy(out.data() + p + 4, ns.uuid.bytes.data(), 16);
    p += 20;
  }
  return out;
}

std::vector<uint8_t> build_active_ns_list(std::vector<uint32_t> nsids, uint32_t after) {
  std::vector<uint8_t> out(4096, 0);
  std::sort(nsids.begin(), nsids.end());
  size_t k = 0;
  for (uint32_t id : nsids) {
    if (id <= after || k == 1024) continue;
    std::memcpy(out.data() + 4 * k++, &id, 4);
  }
  return out;
}

std::vector<uint8_t> build_discovery_log(uint64_t genctr, const std::vector<DiscoveryEntry>& entries) {
  std::vector<uint8_t> out(1024 * (1 + entries.size()), 0);
  DiscoveryLogHeader h{};
  h.genctr = genctr;
  h.numrec = entries.size();
  h.recfmt = 0;
  std::memcpy(out.data(), &h, sizeof(h));
  for (size_t i = 0; i < entries.size(); ++i) {
    const auto& e = entries[i];
    DiscoveryLogEntry d{};
    d.trtype = 3;
    d.adrfam = e.ipv6 ? 2 : 1;
    d.subtype = e.is_discovery ? 3 : 2;
    d.treq = 2;  // secure channel not required
    d.portid = e.portid;
    d.cntlid = 0xffff;
    d.asqsz = 32;
    std::memset(d.trsvcid, ' ', sizeof(d.trsvcid));
    std::memcpy(d.trsvcid, e.trsvcid.data(), std::min(sizeof(d.trsvcid), e.trsvcid.size()));
    copy_nqn(d.subnqn, sizeof(d.subnqn), e.subnqn);
    std::memset(d.traddr, ' ', sizeof(d.traddr));
    std::memcpy(d.traddr, e.traddr.data(), std::min(sizeof(d.traddr), e.traddr.size()));
    d.tsas[0] = 0;  // TCP: no security
    std::memcpy(out.data() + 1024 * (i + 1), &d, sizeof(d));
  }
  return out;
}

}  // namespace castor::nvmf
