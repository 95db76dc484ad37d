#pragma once
// NVMe-oF/TCP as a frontend::FrontEnd: an export is a subsystem (its NQN the export's
// name) with the bdev as namespace 1 and the export's allowed hosts. The target itself
// (target()) stays reachable for what only NVMe-oF has: ANA states, controllers.

#include <optional>
#include <string>
#include <vector>

#include "frontend/front_end.h"
#include "nvmf/target/target.h"

namespace castor::nvmf {

// The NQN prefix of every subsystem the engine names itself.
inline constexpr const char* kNqnPrefix = "nqn.2026-11.io.castor:";
// nqn.2026-11.io.castor:<kind>-<uuid>.
std::string castor_nqn(const std::string& kind, const Uuid& uuid);

class NvmfFrontEnd final : public frontend::FrontEnd {
 public:
  NvmfFrontEnd(reactor::ReactorGroup& reactors, bdev::BdevRegistry& registry,
               TargetOptions opts = {});

  const char* protocol() const override { return "nvmf"; }
  const char* display_name() const override { return "NVMe-oF"; }
  Result<uint16_t> listen(const std::string& host, uint16_t port) override;
  // castor_nqn(spec.kind, spec.uuid).
  std::string default_name(const frontend::ExportSpec& spec) const override;
  // Errors besides the interface's: InvalidArgument (an allowed host that is not an NQN,
  // read-only, CHAP: NVMe-oF exports here are read-write with host NQN access only).
  Result<frontend::Export> add_export(const frontend::ExportSpec& spec) override;
  Status remove_export(const std::string& nqn, bool force) override;
  // One per namespace (an export's name may repeat for a subsystem of several).
  std::vector<frontend::Export> exports() const override;
  std::string uri(const std::string& authority, const std::string& nqn) const override;
  void announce_resize(const std::string& bdev) override;
  std::vector<frontend::Metric> metrics() const override;
  void stop() override;

  // The ANA state of the subsystem sharing `bdev` (NvmfTarget::set_ana_state). Errors:
  // NotFound (not shared), InvalidArgument.
  Status set_ana_state(const std::string& bdev, AnaState state);
  // The ANA state of the subsystem sharing `bdev`; nullopt if it is not shared.
  std::optional<AnaState> ana_state(const std::string& bdev) const;

  NvmfTarget& target() { return target_; }
  const NvmfTarget& target() const { return target_; }

 private:
  NvmfTarget target_;
};

}  // namespace castor::nvmf
