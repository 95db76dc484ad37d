// castor-csi's pure rules: StorageClass parameters, capacity ranges, capabilities, CSI
// names, target URIs (what reaches a command line), the mount table parser, the node's
// state records, and the per-volume operation locks.

#include <gtest/gtest.h>

#include "csi/initiator.h"
#include "csi/mounter.h"
#include "csi/node_state.h"
#include "csi/operation_locks.h"
#include "csi/parameters.h"

namespace castor::csi {
namespace {

namespace v1 = ::csi::v1;

google::protobuf::Map<std::string, std::string> params(std::initializer_list<std::pair<const char*, const char*>> kv) {
  google::protobuf::Map<std::string, std::string> m;
  for (auto& [k, v] : kv) m[k] = v;
  return m;
}

TEST(Params, DefaultsAndEveryKey) {
  auto d = parse_params(params({}));
  ASSERT_TRUE(d);
  EXPECT_EQ(d->repl, 1u);
  EXPECT_FALSE(d->thin);
  EXPECT_EQ(d->protocol, "nvmf");
  auto p = parse_params(params({{"repl", "3"}, {"thin", "true"}, {"protocol", "iscsi"}, {"fsType", "xfs"},
                                {"csi.storage.k8s.io/pvc/name", "claim"}}));
  ASSERT_TRUE(p);
  EXPECT_EQ(p->repl, 3u);
  EXPECT_TRUE(p->thin);
  EXPECT_EQ(p->protocol, "iscsi");
  EXPECT_EQ(p->fs_type, "xfs");
}

TEST(Params, BadValuesAndUnknownKeysAreRefused) {
  for (auto bad : {params({{"repl", "0"}}), params({{"repl", "9"}}), params({{"repl", "12"}}),
                   params({{"repl", ""}}), params({{"thin", "yes"}}), params({{"protocol", "nfs"}}),
                   params({{"fsType", "btrfs"}}), params({{"replicas", "2"}})}) {
    auto r = parse_params(bad);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.status().code(), Errc::kInvalidArgument);
  }
}

v1::CapacityRange range(int64_t req, int64_t lim) {
  v1::CapacityRange r;
  r.set_required_bytes(req);
  r.set_limit_bytes(lim);
  return r;
}

TEST(Capacity, RoundsUpWithinTheLimit) {
  EXPECT_EQ(*size_for_range(nullptr), kDefaultVolumeBytes);
  auto r = range(0, 0);
  EXPECT_EQ(*size_for_range(&r), kDefaultVolumeBytes);
  r = range(1, 0);
  EXPECT_EQ(*size_for_range(&r), 4096u);
  r = range(4097, 8192);
  EXPECT_EQ(*size_for_range(&r), 8192u);
  r = range(0, 1 << 20);  // no requirement, a limit below the default size
  EXPECT_EQ(*size_for_range(&r), 1u << 20);
  r = range(5000, 6000);
  EXPECT_EQ(size_for_range(&r).status().code(), Errc::kUnsupported);
  r = range(0, 100);
  EXPECT_EQ(size_for_range(&r).status().code(), Errc::kUnsupported);
  r = range(-1, 0);
  EXPECT_EQ(size_for_range(&r).status().code(), Errc::kInvalidArgument);
  r = range(10, 5);
  EXPECT_EQ(size_for_range(&r).status().code(), Errc::kInvalidArgument);
  r = range(4096, 8192);
  EXPECT_TRUE(size_fits_range(8192, &r));
  EXPECT_FALSE(size_fits_range(12288, &r));
  EXPECT_FALSE(size_fits_range(0, &r));
}

v1::VolumeCapability cap(v1::VolumeCapability::AccessMode::Mode mode, bool block, const char* fs = "") {
  v1::VolumeCapability c;
  c.mutable_access_mode()->set_mode(mode);
  if (block) {
    c.mutable_block();
  } else {
    c.mutable_mount()->set_fs_type(fs);
  }
  return c;
}

TEST(Capabilities, SingleNodeBlockOrExt4Xfs) {
  using M = v1::VolumeCapability::AccessMode;
  EXPECT_FALSE(unsupported_capability(cap(M::SINGLE_NODE_WRITER, true)));
  EXPECT_FALSE(unsupported_capability(cap(M::SINGLE_NODE_WRITER, false)));
  EXPECT_FALSE(unsupported_capability(cap(M::SINGLE_NODE_READER_ONLY, false, "xfs")));
  EXPECT_FALSE(unsupported_capability(cap(M::SINGLE_NODE_MULTI_WRITER, false, "ext4")));
  EXPECT_TRUE(unsupported_capability(cap(M::MULTI_NODE_MULTI_WRITER, true)));
  EXPECT_TRUE(unsupported_capability(cap(M::MULTI_NODE_READER_ONLY, false)));
  EXPECT_TRUE(unsupported_capability(cap(M::UNKNOWN, true)));
  EXPECT_TRUE(unsupported_capability(cap(M::SINGLE_NODE_WRITER, false, "btrfs")));
  v1::VolumeCapability neither;
  neither.mutable_access_mode()->set_mode(M::SINGLE_NODE_WRITER);
  EXPECT_TRUE(unsupported_capability(neither));
  EXPECT_EQ(fs_type_of(cap(M::SINGLE_NODE_WRITER, false)), "ext4");
}

TEST(Names, ControlNamesAreDeterministicAndValid) {
  EXPECT_EQ(control_volume_name("pvc-1"), "pvc-1");
  EXPECT_EQ(control_volume_name(std::string(128, 'a')), std::string(128, 'a'));
  const std::string odd = control_volume_name("ns/odd name:1");
  EXPECT_EQ(odd, control_volume_name("ns/odd name:1"));
  EXPECT_EQ(odd.size(), 44u);
  EXPECT_EQ(odd.rfind("csi-", 0), 0u);
  EXPECT_NE(odd, control_volume_name("ns/odd name:2"));
  EXPECT_EQ(control_volume_name(std::string(129, 'a')).size(), 44u);
  EXPECT_EQ(uuid_from_name("pvc-0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"), "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0");
  EXPECT_EQ(uuid_from_name("pvc-notauuid"), "");
  EXPECT_EQ(uuid_from_name("0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"), "");
}

TEST(TargetUri, ParsesEachProtocol) {
  auto n = TargetAddress::parse("nvmf://10.0.0.2:4420/nqn.2026-11.io.castor:nexus-abc");
  ASSERT_TRUE(n) << n.status().message();
  EXPECT_EQ(n->protocol, "nvmf");
  EXPECT_EQ(n->host, "10.0.0.2");
  EXPECT_EQ(n->port, 4420);
  EXPECT_EQ(n->name, "nqn.2026-11.io.castor:nexus-abc");
  auto i = TargetAddress::parse("iscsi://10.0.0.2:3260/iqn.2026-11.io.castor:v1/0");
  ASSERT_TRUE(i) << i.status().message();
  EXPECT_EQ(i->name, "iqn.2026-11.io.castor:v1");
  EXPECT_EQ(i->lun, 0u);
  auto b = TargetAddress::parse("nbd://127.0.0.1:10809/vol_1");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->name, "vol_1");
}

TEST(TargetUri, RefusesWhatACommandLineMustNotCarry) {
  for (const char* bad : {"", "nvmf://10.0.0.2/nqn", "nvmf://10.0.0.2:0/nqn", "nfs://h:1/x",
                          "nvmf://h:4420/-n", "nvmf://h:4420/a%20b", "nvmf://h:4420/a;b", "nvmf://h:4420/",
                          "iscsi://h:3260/iqn.x", "iscsi://h:3260/iqn.x/", "iscsi://h:3260/iqn.x/abc",
                          "nbd://-h:1/x"}) {
    EXPECT_FALSE(TargetAddress::parse(bad)) << bad;
  }
}

TEST(NvmeAddress, ParsesWhatSysfsShowsAndIgnoresJunk) {
  NvmeController c;
  parse_nvme_address("traddr=10.0.2.2,trsvcid=40335,src_addr=10.0.2.15", &c);
  EXPECT_EQ(c.host, "10.0.2.2");
  EXPECT_EQ(c.port, 40335);
  NvmeController bad;
  parse_nvme_address("trsvcid=99999x,foo", &bad);
  EXPECT_EQ(bad.port, 0);
  EXPECT_TRUE(bad.host.empty());
}

TEST(MountInfo, ParsesAndDecodesAndSkipsJunk) {
  const std::string text =
      "36 35 98:0 /mnt1 /mnt/parent\\040dir rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n"
      "37 36 259:3 / /var/lib/kubelet/x ro,relatime shared:2 - ext4 /dev/nvme0n1 ro\n"
      "garbage line\n"
      "38 36 1:2 / /no/dash rw\n"
      "39 36 x:2 / /bad/dev rw - ext4 /dev/x rw\n"
      "40 36 7:1 / /tail rw -\n";
  auto m = parse_mountinfo(text);
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0].mount_point, "/mnt/parent dir");
  EXPECT_EQ(m[0].root, "/mnt1");
  EXPECT_EQ(m[0].fs_type, "ext3");
  EXPECT_EQ(m[0].major, 98u);
  EXPECT_FALSE(m[0].read_only());
  EXPECT_EQ(m[1].source, "/dev/nvme0n1");
  EXPECT_EQ(m[1].minor, 3u);
  EXPECT_TRUE(m[1].read_only());
}

TEST(NodeStateRecord, RoundTripsAndRefusesBadDocuments) {
  StagedVolume v;
  v.volume_id = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0";
  v.uri = "nvmf://h:1/nqn.x";
  v.device = "/dev/nvme0n1";
  v.staging_path = "/var/lib/kubelet/plugins/x/globalmount";
  v.access = "mount";
  v.fs_type = "ext4";
  v.mount_flags = {"noatime"};
  v.publications = {{"/var/lib/kubelet/pods/p/mount", true}};
  auto back = staged_from_json(staged_to_json(v));
  ASSERT_TRUE(back) << back.status().message();
  EXPECT_EQ(back->volume_id, v.volume_id);
  EXPECT_EQ(back->mount_flags, v.mount_flags);
  EXPECT_EQ(back->publications, v.publications);
  for (const char* bad :
       {"", "[]", "{}", R"({"format":"castor-csi-volume","version":2})",
        R"({"format":"castor-csi-volume","version":1,"volume_id":"../x","uri":"","device":"","staging_path":"/s","access":"mount","publications":[]})",
        R"({"format":"castor-csi-volume","version":1,"volume_id":"v","uri":"","device":"","staging_path":"rel","access":"mount","publications":[]})",
        R"({"format":"castor-csi-volume","version":1,"volume_id":"v","uri":"","device":"","staging_path":"/s","access":"raw","publications":[]})",
        R"({"format":"castor-csi-volume","version":1,"volume_id":"v","uri":"","device":"","staging_path":"/s","access":"block","publications":[{"target":"/t","readonly":1}]})",
        R"({"format":"castor-csi-volume","version":-1})"}) {
    EXPECT_FALSE(staged_from_json(bad)) << bad;
  }
  EXPECT_FALSE(valid_volume_id(".."));
  EXPECT_FALSE(valid_volume_id("a/b"));
  EXPECT_TRUE(valid_volume_id("fake-vol-id-0123"));
}

TEST(Locks, OneOperationPerVolume) {
  OperationLocks locks;
  {
    auto a = locks.try_acquire("v");
    ASSERT_TRUE(a);
    EXPECT_FALSE(locks.try_acquire("v"));
    EXPECT_TRUE(locks.try_acquire("w"));
  }
  EXPECT_TRUE(locks.try_acquire("v"));
}

}  // namespace
}  // namespace castor::csi
