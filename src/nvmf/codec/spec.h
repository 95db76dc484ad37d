#pragma once
// NVMe and NVMe-oF/TCP wire structures (little-endian), shared by Castor's target and
// host. Every struct has compile-time checks of its size and of the field offsets that
// peers depend on (offsets from the NVMe 2.0 and NVMe/TCP 1.0 specifications, as the
// Linux host and target use them).

#include <cstddef>
#include <cstdint>

namespace castor::nvmf {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "wire structs are little-endian");

// ---------------------------------------------------------------- TCP transport PDUs
enum class PduType : uint8_t {
  kICReq = 0x00,
  kICResp = 0x01,
  kH2CTermReq = 0x02,
  kC2HTermReq = 0x03,
  kCapsuleCmd = 0x04,
  kCapsuleResp = 0x05,
  kH2CData = 0x06,
  kC2HData = 0x07,
  kR2T = 0x09,
};

namespace pdu_flags {
inline constexpr uint8_t kHdgst = 0x01;
inline constexpr uint8_t kDdgst = 0x02;
inline constexpr uint8_t kLastPdu = 0x04;
inline constexpr uint8_t kSuccess = 0x08;
}  // namespace pdu_flags

struct CommonHeader {
  uint8_t type;
  uint8_t flags;
  uint8_t hlen;
  uint8_t pdo;
  uint32_t plen;
};
static_assert(sizeof(CommonHeader) == 8);
static_assert(offsetof(CommonHeader, plen) == 4);

struct ICReq {
  CommonHeader ch;
  uint16_t pfv;
  uint8_t hpda;
  uint8_t dgst;  // bit 0 header digest, bit 1 data digest
  uint32_t maxr2t;
  uint8_t reserved[112];
};
static_assert(sizeof(ICReq) == 128);
static_assert(offsetof(ICReq, pfv) == 8 && offsetof(ICReq, hpda) == 10 && offsetof(ICReq, dgst) == 11 &&
              offsetof(ICReq, maxr2t) == 12);

struct ICResp {
  CommonHeader ch;
  uint16_t pfv;
  uint8_t cpda;
  uint8_t dgst;
  uint32_t maxh2cdata;
  uint8_t reserved[112];
};
static_assert(sizeof(ICResp) == 128);
static_assert(offsetof(ICResp, cpda) == 10 && offsetof(ICResp, maxh2cdata) == 12);

// Fatal error status of a TermReq.
enum class TermFes : uint16_t {
  kInvalidHeaderField = 1,
  kPduSequenceError = 2,
  kHeaderDigestError = 3,
  kDataOutOfRange = 4,
  kR2TLimitExceeded = 5,  // "data transfer limit exceeded"
  kUnsupportedParameter = 6,
};

struct TermReq {
  CommonHeader ch;
  uint16_t fes;
  uint32_t fei;  // byte 10 (unaligned in the spec layout: packed below)
  uint8_t reserved[10];
} __attribute__((packed));
static_assert(sizeof(TermReq) == 24);
static_assert(offsetof(TermReq, fes) == 8 && offsetof(TermReq, fei) == 10);
inline constexpr uint32_t kTermReqMaxData = 128;

// NVMe submission queue entry (64 B).
struct SglDescriptor {
  uint64_t address;
  uint32_t length;
  uint8_t reserved[3];
  uint8_t type;  // (descriptor type << 4) | subtype
};
static_assert(sizeof(SglDescriptor) == 16);
inline constexpr uint8_t kSglDataBlockOffset = 0x01;   // in-capsule data
inline constexpr uint8_t kSglTransportDataBlock = 0x5A;  // data via R2T / C2HData

struct Sqe {
  uint8_t opcode;
  uint8_t flags;  // PSDT in bits 7:6 (01b = SGL)
  uint16_t cid;
  uint32_t nsid;
  uint32_t cdw2;
  uint32_t cdw3;
  uint64_t mptr;
  SglDescriptor sgl1;
  uint32_t cdw10, cdw11, cdw12, cdw13, cdw14, cdw15;
};
static_assert(sizeof(Sqe) == 64);
static_assert(offsetof(Sqe, cid) == 2 && offsetof(Sqe, nsid) == 4 && offsetof(Sqe, mptr) == 16 &&
              offsetof(Sqe, sgl1) == 24 && offsetof(Sqe, cdw10) == 40 && offsetof(Sqe, cdw15) == 60);

// Status field of a CQE: P bit 0, SC 8:1, SCT 11:9, CRD 13:12, M 14, DNR 15.
struct Cqe {
  uint32_t dw0;
  uint32_t dw1;
  uint16_t sqhd;
  uint16_t sqid;
  uint16_t cid;
  uint16_t status;
};
static_assert(sizeof(Cqe) == 16);
static_assert(offsetof(Cqe, sqhd) == 8 && offsetof(Cqe, cid) == 12 && offsetof(Cqe, status) == 14);

struct CapsuleCmdHeader {
  CommonHeader ch;
  Sqe sqe;
};
static_assert(sizeof(CapsuleCmdHeader) == 72);

struct CapsuleRespHeader {
  CommonHeader ch;
  Cqe cqe;
};
static_assert(sizeof(CapsuleRespHeader) == 24);

// H2CData and C2HData.
struct DataHeader {
  CommonHeader ch;
  uint16_t cccid;
  uint16_t ttag;  // H2CData only (reserved in C2HData)
  uint32_t datao;
  uint32_t datal;
  uint32_t reserved;
};
static_assert(sizeof(DataHeader) == 24);
static_assert(offsetof(DataHeader, cccid) == 8 && offsetof(DataHeader, datao) == 12 &&
              offsetof(DataHeader, datal) == 16);

struct R2THeader {
  CommonHeader ch;
  uint16_t cccid;
  uint16_t ttag;
  uint32_t r2to;
  uint32_t r2tl;
  uint32_t reserved;
};
static_assert(sizeof(R2THeader) == 24);
static_assert(offsetof(R2THeader, r2to) == 12 && offsetof(R2THeader, r2tl) == 16);

// ---------------------------------------------------------------- status codes
enum class Sct : uint8_t { kGeneric = 0, kCommandSpecific = 1, kMediaError = 2, kPath = 3 };

namespace sc {  // generic (SCT 0)
inline constexpr uint8_t kSuccess = 0x00;
inline constexpr uint8_t kInvalidOpcode = 0x01;
inline constexpr uint8_t kInvalidField = 0x02;
inline constexpr uint8_t kCidConflict = 0x03;
inline constexpr uint8_t kDataTransferError = 0x04;
inline constexpr uint8_t kInternalError = 0x06;
inline constexpr uint8_t kAbortRequested = 0x07;
inline constexpr uint8_t kSglInvalidData = 0x0F;  // SGL data block length invalid / too large
inline constexpr uint8_t kSglInvalidType = 0x11;
inline constexpr uint8_t kSglInvalidOffset = 0x16;
inline constexpr uint8_t kCommandSequenceError = 0x0C;
inline constexpr uint8_t kInvalidNamespace = 0x0B;
inline constexpr uint8_t kLbaOutOfRange = 0x80;
inline constexpr uint8_t kCapacityExceeded = 0x81;
inline constexpr uint8_t kNamespaceNotReady = 0x82;
inline constexpr uint8_t kReservationConflict = 0x83;
// command specific (SCT 1)
inline constexpr uint8_t kInvalidQueueSize = 0x02;
inline constexpr uint8_t kInvalidLogPage = 0x09;
inline constexpr uint8_t kFeatureNotSaveable = 0x0D;
inline constexpr uint8_t kAsyncEventLimitExceeded = 0x05;
inline constexpr uint8_t kConnectIncompatibleFormat = 0x80;
inline constexpr uint8_t kConnectControllerBusy = 0x81;
inline constexpr uint8_t kConnectInvalidParameters = 0x82;
inline constexpr uint8_t kConnectInvalidHost = 0x84;
// media errors (SCT 2)
inline constexpr uint8_t kWriteFault = 0x80;
inline constexpr uint8_t kUnrecoveredReadError = 0x81;
// path related (SCT 3): the host retries the command on another path
inline constexpr uint8_t kAnaPersistentLoss = 0x01;
inline constexpr uint8_t kAnaInaccessible = 0x02;
inline constexpr uint8_t kAnaTransition = 0x03;
}  // namespace sc

inline constexpr uint16_t make_status(Sct sct, uint8_t code, bool dnr = false) {
  return static_cast<uint16_t>((code << 1) | (static_cast<uint16_t>(sct) << 9) | (dnr ? 0x8000 : 0));
}
inline constexpr uint8_t status_code(uint16_t s) { return static_cast<uint8_t>((s >> 1) & 0xff); }
inline constexpr Sct status_type(uint16_t s) { return static_cast<Sct>((s >> 9) & 0x7); }

// ---------------------------------------------------------------- opcodes
namespace admin_op {
inline constexpr uint8_t kGetLogPage = 0x02;
inline constexpr uint8_t kIdentify = 0x06;
inline constexpr uint8_t kAbort = 0x08;
inline constexpr uint8_t kSetFeatures = 0x09;
inline constexpr uint8_t kGetFeatures = 0x0A;
inline constexpr uint8_t kAsyncEventRequest = 0x0C;
inline constexpr uint8_t kKeepAlive = 0x18;
inline constexpr uint8_t kFabrics = 0x7F;
}  // namespace admin_op

namespace io_op {
inline constexpr uint8_t kFlush = 0x00;
inline constexpr uint8_t kWrite = 0x01;
inline constexpr uint8_t kRead = 0x02;
inline constexpr uint8_t kWriteZeroes = 0x08;
inline constexpr uint8_t kDatasetManagement = 0x09;
inline constexpr uint8_t kReservationRegister = 0x0D;
inline constexpr uint8_t kReservationReport = 0x0E;
inline constexpr uint8_t kReservationAcquire = 0x11;
inline constexpr uint8_t kReservationRelease = 0x15;
}  // namespace io_op

// Read / Write / Write Zeroes CDW12: bits 15:0 NLB (0's based), bit 30 Force Unit Access
// (the data is on non-volatile media before the command completes), bit 31 Limited Retry.
inline constexpr uint32_t kCdw12Fua = 1u << 30;

namespace fctype {
inline constexpr uint8_t kPropertySet = 0x00;
inline constexpr uint8_t kConnect = 0x01;
inline constexpr uint8_t kPropertyGet = 0x04;
inline constexpr uint8_t kAuthSend = 0x05;
inline constexpr uint8_t kAuthRecv = 0x06;
}  // namespace fctype

// Fabrics commands overlay the SQE.
struct FabricsCmd {
  uint8_t opcode;  // 0x7F
  uint8_t reserved1;
  uint16_t cid;
  uint8_t fctype;
  uint8_t reserved2[19];
  SglDescriptor sgl1;
  uint8_t specific[24];
};
static_assert(sizeof(FabricsCmd) == 64 && offsetof(FabricsCmd, fctype) == 4 && offsetof(FabricsCmd, sgl1) == 24);

struct ConnectCmd {
  uint8_t opcode;
  uint8_t reserved1;
  uint16_t cid;
  uint8_t fctype;
  uint8_t reserved2[19];
  SglDescriptor sgl1;
  uint16_t recfmt;
  uint16_t qid;
  uint16_t sqsize;  // 0's based
  uint8_t cattr;    // bit 2: disable SQ flow control
  uint8_t reserved3;
  uint32_t kato;  // ms
  uint8_t reserved4[12];
};
static_assert(sizeof(ConnectCmd) == 64);
static_assert(offsetof(ConnectCmd, recfmt) == 40 && offsetof(ConnectCmd, qid) == 42 &&
              offsetof(ConnectCmd, sqsize) == 44 && offsetof(ConnectCmd, cattr) == 46 &&
              offsetof(ConnectCmd, kato) == 48);

struct ConnectData {
  uint8_t hostid[16];
  uint16_t cntlid;
  uint8_t reserved1[238];
  char subnqn[256];
  char hostnqn[256];
  uint8_t reserved2[256];
};
static_assert(sizeof(ConnectData) == 1024);
static_assert(offsetof(ConnectData, cntlid) == 16 && offsetof(ConnectData, subnqn) == 256 &&
              offsetof(ConnectData, hostnqn) == 512);

struct PropertyCmd {
  uint8_t opcode;
  uint8_t reserved1;
  uint16_t cid;
  uint8_t fctype;
  uint8_t reserved2[35];
  uint8_t attrib;  // bits 2:0: 0 = 4 bytes, 1 = 8 bytes
  uint8_t reserved3[3];
  uint32_t ofst;
  uint64_t value;  // Property Set
  uint8_t reserved4[8];
};
static_assert(sizeof(PropertyCmd) == 64);
static_assert(offsetof(PropertyCmd, attrib) == 40 && offsetof(PropertyCmd, ofst) == 44 &&
              offsetof(PropertyCmd, value) == 48);

namespace prop {
inline constexpr uint32_t kCap = 0x00;
inline constexpr uint32_t kVs = 0x08;
inline constexpr uint32_t kCc = 0x14;
inline constexpr uint32_t kCsts = 0x1C;
inline constexpr uint32_t kNssr = 0x20;
}  // namespace prop

// ---------------------------------------------------------------- identify / logs
struct IdentifyController {
  uint16_t vid;
  uint16_t ssvid;
  char sn[20];
  char mn[40];
  char fr[8];
  uint8_t rab;
  uint8_t ieee[3];
  uint8_t cmic;
  uint8_t mdts;
  uint16_t cntlid;
  uint32_t ver;
  uint32_t rtd3r;
  uint32_t rtd3e;
  uint32_t oaes;
  uint32_t ctratt;
  uint8_t reserved100[11];
  uint8_t cntrltype;
  uint8_t fguid[16];
  uint8_t reserved128[128];
  uint16_t oacs;
  uint8_t acl;
  uint8_t aerl;
  uint8_t frmw;
  uint8_t lpa;
  uint8_t elpe;
  uint8_t npss;
  uint8_t reserved264[56];
  uint16_t kas;
  uint8_t reserved322[20];
  uint8_t anatt;       // ANA transition time, seconds
  uint8_t anacap;      // ANA capabilities (anacap:: bits)
  uint32_t anagrpmax;  // largest ANA group id
  uint32_t nanagrpid;  // number of ANA group ids
  uint8_t reserved352[160];
  uint8_t sqes;
  uint8_t cqes;
  uint16_t maxcmd;
  uint32_t nn;
  uint16_t oncs;
  uint16_t fuses;
  uint8_t fna;
  uint8_t vwc;
  uint16_t awun;
  uint16_t awupf;
  uint8_t icsvscc;
  uint8_t nwpc;
  uint16_t acwu;
  uint16_t reserved534;
  uint32_t sgls;
  uint32_t mnan;  // maximum number of allowed namespaces (the host sizes the ANA log by it)
  uint8_t reserved544[224];
  char subnqn[256];
  uint8_t reserved1024[768];
  uint32_t ioccsz;
  uint32_t iorcsz;
  uint16_t icdoff;
  uint8_t fcatt;
  uint8_t msdbd;
  uint16_t ofcs;
  uint8_t reserved1806[242];
  uint8_t psd[1024];
  uint8_t vs[1024];
};
static_assert(sizeof(IdentifyController) == 4096);
static_assert(offsetof(IdentifyController, sn) == 4 && offsetof(IdentifyController, mn) == 24 &&
              offsetof(IdentifyController, fr) == 64 && offsetof(IdentifyController, cmic) == 76 &&
              offsetof(IdentifyController, mdts) == 77 && offsetof(IdentifyController, cntlid) == 78 &&
              offsetof(IdentifyController, ver) == 80 && offsetof(IdentifyController, oaes) == 92 &&
              offsetof(IdentifyController, ctratt) == 96 && offsetof(IdentifyController, cntrltype) == 111 &&
              offsetof(IdentifyController, oacs) == 256 && offsetof(IdentifyController, aerl) == 259 &&
              offsetof(IdentifyController, lpa) == 261 && offsetof(IdentifyController, kas) == 320 &&
              offsetof(IdentifyController, anatt) == 342 && offsetof(IdentifyController, anacap) == 343 &&
              offsetof(IdentifyController, anagrpmax) == 344 && offsetof(IdentifyController, nanagrpid) == 348 &&
              offsetof(IdentifyController, mnan) == 540 &&
              offsetof(IdentifyController, sqes) == 512 && offsetof(IdentifyController, maxcmd) == 514 &&
              offsetof(IdentifyController, nn) == 516 && offsetof(IdentifyController, oncs) == 520 &&
              offsetof(IdentifyController, vwc) == 525 && offsetof(IdentifyController, sgls) == 536 &&
              offsetof(IdentifyController, subnqn) == 768 && offsetof(IdentifyController, ioccsz) == 1792 &&
              offsetof(IdentifyController, icdoff) == 1800 && offsetof(IdentifyController, fcatt) == 1802 &&
              offsetof(IdentifyController, msdbd) == 1803);

struct LbaFormat {
  uint16_t ms;
  uint8_t lbads;  // log2 of the LBA data size
  uint8_t rp;
};
static_assert(sizeof(LbaFormat) == 4);

struct IdentifyNamespace {
  uint64_t nsze;
  uint64_t ncap;
  uint64_t nuse;
  uint8_t nsfeat;
  uint8_t nlbaf;  // 0's based
  uint8_t flbas;
  uint8_t mc;
  uint8_t dpc;
  uint8_t dps;
  uint8_t nmic;
  uint8_t rescap;
  uint8_t fpi;
  uint8_t dlfeat;
  uint16_t nawun;
  uint16_t nawupf;
  uint16_t nacwu;
  uint16_t nabsn;
  uint16_t nabo;
  uint16_t nabspf;
  uint16_t noiob;
  uint8_t nvmcap[16];
  uint8_t reserved64[28];
  uint32_t anagrpid;  // the namespace's ANA group
  uint8_t reserved96[8];
  uint8_t nguid[16];
  uint8_t eui64[8];
  LbaFormat lbaf[64];
  uint8_t reserved384[3712];
};
static_assert(sizeof(IdentifyNamespace) == 4096);
static_assert(offsetof(IdentifyNamespace, nlbaf) == 25 && offsetof(IdentifyNamespace, flbas) == 26 &&
              offsetof(IdentifyNamespace, nmic) == 30 && offsetof(IdentifyNamespace, rescap) == 31 &&
              offsetof(IdentifyNamespace, anagrpid) == 92 &&
              offsetof(IdentifyNamespace, nguid) == 104 && offsetof(IdentifyNamespace, eui64) == 120 &&
              offsetof(IdentifyNamespace, lbaf) == 128);

namespace cns {
inline constexpr uint8_t kNamespace = 0x00;
inline constexpr uint8_t kController = 0x01;
inline constexpr uint8_t kActiveNsList = 0x02;
inline constexpr uint8_t kNsDescriptors = 0x03;
}  // namespace cns

namespace log_id {
inline constexpr uint8_t kError = 0x01;
inline constexpr uint8_t kSmart = 0x02;
inline constexpr uint8_t kFirmware = 0x03;
inline constexpr uint8_t kChangedNs = 0x04;
inline constexpr uint8_t kCommandEffects = 0x05;
inline constexpr uint8_t kAna = 0x0C;
inline constexpr uint8_t kDiscovery = 0x70;
inline constexpr uint8_t kReservationNotification = 0x80;
}  // namespace log_id

namespace feature {
inline constexpr uint8_t kErrorRecovery = 0x05;
inline constexpr uint8_t kVolatileWriteCache = 0x06;
inline constexpr uint8_t kNumberOfQueues = 0x07;
inline constexpr uint8_t kAsyncEventConfig = 0x0B;
inline constexpr uint8_t kKeepAliveTimer = 0x0F;
inline constexpr uint8_t kHostIdentifier = 0x81;
inline constexpr uint8_t kReservationPersistence = 0x83;
}  // namespace feature

struct DiscoveryLogHeader {
  uint64_t genctr;
  uint64_t numrec;
  uint16_t recfmt;
  uint8_t reserved[1006];
};
static_assert(sizeof(DiscoveryLogHeader) == 1024);

struct DiscoveryLogEntry {
  uint8_t trtype;  // 3 = TCP
  uint8_t adrfam;  // 1 = IPv4, 2 = IPv6
  uint8_t subtype;  // 2 = NVM subsystem, 3 = current discovery
  uint8_t treq;
  uint16_t portid;
  uint16_t cntlid;
  uint16_t asqsz;
  uint16_t eflags;
  uint8_t reserved12[20];
  char trsvcid[32];
  uint8_t reserved64[192];
  char subnqn[256];
  char traddr[256];
  uint8_t tsas[256];
};
static_assert(sizeof(DiscoveryLogEntry) == 1024);
static_assert(offsetof(DiscoveryLogEntry, trsvcid) == 32 && offsetof(DiscoveryLogEntry, subnqn) == 256 &&
              offsetof(DiscoveryLogEntry, traddr) == 512 && offsetof(DiscoveryLogEntry, tsas) == 768);

// ---------------------------------------------------------------- asynchronous events
// An Async Event Request completes with DW0 = type | info << 8 | log page << 16.
namespace aen {
inline constexpr uint8_t kTypeNotice = 2;
inline constexpr uint8_t kNoticeNsAttrChanged = 0x00;  // log page 04h
inline constexpr uint8_t kNoticeAnaChange = 0x03;      // log page 0Ch
inline constexpr uint32_t make(uint8_t type, uint8_t info, uint8_t log) {
  return uint32_t{type} | uint32_t{info} << 8 | uint32_t{log} << 16;
}
}  // namespace aen

// ---------------------------------------------------------------- ANA (asymmetric namespace access)
// OAES bit 11: ANA change notices. CMIC bit 3: ANA reporting.
inline constexpr uint32_t kOaesAnaChange = 1u << 11;
inline constexpr uint32_t kOaesNsAttr = 1u << 8;
inline constexpr uint8_t kCmicMultiCtrl = 1u << 1;
inline constexpr uint8_t kCmicAna = 1u << 3;
namespace anacap {
inline constexpr uint8_t kOptimized = 1u << 0;
inline constexpr uint8_t kNonOptimized = 1u << 1;
inline constexpr uint8_t kInaccessible = 1u << 2;
inline constexpr uint8_t kPersistentLoss = 1u << 3;
inline constexpr uint8_t kChange = 1u << 4;
inline constexpr uint8_t kGroupIdStatic = 1u << 6;  // ANAGRPID does not change while attached
}  // namespace anacap

enum class AnaState : uint8_t {
  kOptimized = 0x01,
  kNonOptimized = 0x02,
  kInaccessible = 0x03,
  kPersistentLoss = 0x04,
  kChange = 0x0F,
};

// Log page 0Ch: a header, then per group a descriptor followed by its NSIDs (u32 each),
// unless Get Log Page's LSP bit 0 (RGO, "return groups only") asks for none.
struct AnaLogHeader {
  uint64_t chgcnt;
  uint16_t ngrps;
  uint8_t reserved[6];
};
static_assert(sizeof(AnaLogHeader) == 16 && offsetof(AnaLogHeader, ngrps) == 8);

struct AnaGroupDescriptor {
  uint32_t grpid;
  uint32_t nnsids;
  uint64_t chgcnt;
  uint8_t state;  // AnaState
  uint8_t reserved[15];
};
static_assert(sizeof(AnaGroupDescriptor) == 32 && offsetof(AnaGroupDescriptor, chgcnt) == 8 &&
              offsetof(AnaGroupDescriptor, state) == 16);

// ---------------------------------------------------------------- reservations
// ONCS bit 5: reservations supported. RESCAP (Identify Namespace byte 31) bits 1..6: the
// reservation types 1..6 (bdev::ReservationType holds their wire values); bit 0 persist
// through power loss; bit 7 IEKEY ignores the current key.
inline constexpr uint16_t kOncsReservations = 1u << 5;

// Reservation Register: CDW10 bits 2:0 RREGA (0 register, 1 unregister, 2 replace), bit 3
// IEKEY, bits 31:30 CPTPL. Acquire: bits 2:0 RACQA (0 acquire, 1 preempt, 2 preempt and
// abort), bit 3 IEKEY, bits 15:8 RTYPE. Release: bits 2:0 RRELA (0 release, 1 clear),
// bit 3 IEKEY, bits 15:8 RTYPE. Report: CDW10 NUMD (0's based dwords), CDW11 bit 0 EDS.
namespace resv {
inline constexpr uint8_t kRegister = 0, kUnregister = 1, kReplace = 2;
inline constexpr uint8_t kAcquire = 0, kPreempt = 1, kPreemptAndAbort = 2;
inline constexpr uint8_t kRelease = 0, kClear = 1;
}  // namespace resv

struct ReservationKeys {  // Register: CRKEY, NRKEY; Acquire: CRKEY, PRKEY
  uint64_t current;
  uint64_t other;
};
static_assert(sizeof(ReservationKeys) == 16);

// Reservation Report data: a 24-byte header (64 with EDS) then one entry per registrant
// (24 bytes; 64 with EDS, which carries the 128-bit host identifier).
struct ReservationStatusHeader {
  uint32_t gen;
  uint8_t rtype;
  uint16_t regctl;
  uint8_t reserved7[2];
  uint8_t ptpls;
  uint8_t reserved10[14];
} __attribute__((packed));
static_assert(sizeof(ReservationStatusHeader) == 24 && offsetof(ReservationStatusHeader, regctl) == 5 &&
              offsetof(ReservationStatusHeader, ptpls) == 9);

struct RegisteredController {
  uint16_t cntlid;
  uint8_t rcsts;  // bit 0: holds the reservation
  uint8_t reserved3[5];
  uint64_t hostid;
  uint64_t rkey;
};
static_assert(sizeof(RegisteredController) == 24 && offsetof(RegisteredController, hostid) == 8 &&
              offsetof(RegisteredController, rkey) == 16);

struct RegisteredControllerExtended {
  uint16_t cntlid;
  uint8_t rcsts;
  uint8_t reserved3[5];
  uint64_t rkey;
  uint8_t hostid[16];
  uint8_t reserved32[32];
};
static_assert(sizeof(RegisteredControllerExtended) == 64 && offsetof(RegisteredControllerExtended, rkey) == 8 &&
              offsetof(RegisteredControllerExtended, hostid) == 16);

inline constexpr const char* kDiscoveryNqn = "nqn.2014-08.org.nvmexpress.discovery";

}  // namespace castor::nvmf
