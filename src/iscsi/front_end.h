#pragma once
// iSCSI as a frontend::FrontEnd: an export is a target node (its IQN the export's name)
// with the bdev as LUN 0, the export's CHAP settings and allowed initiators. The target
// itself (target()) stays reachable for what only iSCSI has: sessions.

#include <string>
#include <vector>

#include "bdev/registry.h"
#include "frontend/front_end.h"
#include "iscsi/target.h"

namespace castor::iscsi {

// The IQN prefix of the target nodes the engine names itself.
inline constexpr const char* kIqnPrefix = "iqn.2026-11.io.castor:";

class IscsiFrontEnd final : public frontend::FrontEnd {
 public:
  IscsiFrontEnd(reactor::ReactorGroup& reactors, bdev::BdevRegistry& registry,
                TargetOptions opts = {});

  const char* protocol() const override { return "iscsi"; }
  const char* display_name() const override { return "iSCSI"; }
  Result<uint16_t> listen(const std::string& host, uint16_t port) override;
  // A plain bdev: iqn.2026-11.io.castor:<bdev name, lower-cased, other characters '-'>;
  // a nexus or replica (whose names may not fit an IQN): ...:<kind>-<uuid>.
  std::string default_name(const frontend::ExportSpec& spec) const override;
  // Errors besides the interface's: InvalidArgument (a bad IQN, a CHAP secret without its
  // user or shorter than 12 bytes, mutual CHAP without CHAP). The same settings: CHAP on
  // or off (the secrets are never handed back, so cannot be compared) and initiators.
  Result<frontend::Export> add_export(const frontend::ExportSpec& spec) override;
  // Closes the node's sessions (whether or not `force`). Errors: NotFound, Busy.
  Status remove_export(const std::string& iqn, bool force) override;
  std::vector<frontend::Export> exports() const override;
  std::string uri(const std::string& authority, const std::string& iqn) const override;
  void announce_resize(const std::string& bdev) override;
  std::vector<frontend::Metric> metrics() const override;
  void stop() override;

  IscsiTarget& target() { return target_; }
  const IscsiTarget& target() const { return target_; }

 private:
  bdev::BdevRegistry& registry_;
  IscsiTarget target_;
};

}  // namespace castor::iscsi
