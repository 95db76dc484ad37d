#include <string>
#include <vector>

// The first byte picks the parser: 0 volume record, 1 mount table, 2 target URI,
// 3 an NVMe controller's sysfs address.
extern const std::vector<std::string> kFuzzSeeds = {
    std::string("\x00", 1) +
        R"({"format":"castor-csi-volume","version":1,"volume_id":"v-1","uri":"nvmf://h:1/nqn.x",)"
        R"("device":"/dev/nvme0n1","staging_path":"/s","access":"mount","fs_type":"ext4",)"
        R"("mount_flags":["noatime"],"publications":[{"target":"/t","readonly":false}]})",
    std::string("\x00", 1) + R"({"format":"castor-csi-volume","version":1e300})",
    std::string("\x00", 1) + "[]",
    "\x01" "36 35 98:0 /mnt1 /mnt/parent\\040dir rw,noatime master:1 - ext3 /dev/root rw\n"
    "37 36 259:3 / /x ro shared:2 - ext4 /dev/nvme0n1 ro\n",
    "\x01" "1 2 3:4 / /a rw - \n",
    "\x02" "nvmf://10.0.0.2:4420/nqn.2026-11.io.castor:nexus-abc",
    "\x02" "iscsi://10.0.0.2:3260/iqn.2026-11.io.castor:v1/0",
    "\x02" "nbd://127.0.0.1:10809/vol",
    "\x02" "nvmf://h:4420/-n",
    "\x03" "traddr=10.0.2.2,trsvcid=40335,src_addr=10.0.2.15",
    "\x03" "traddr=,trsvcid=999999,",
};
