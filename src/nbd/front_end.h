#pragma once
// NBD as a frontend::FrontEnd: an export is an NBD export name over the bdev. NBD has no
// access control and cannot tell connected clients about a new size.

#include <string>
#include <vector>

#include "bdev/registry.h"
#include "frontend/front_end.h"
#include "nbd/server.h"

namespace castor::nbd {

class NbdFrontEnd final : public frontend::FrontEnd {
 public:
  NbdFrontEnd(reactor::ReactorGroup& reactors, bdev::BdevRegistry& registry,
              ServerOptions opts = {});

  const char* protocol() const override { return "nbd"; }
  const char* display_name() const override { return "NBD"; }
  Result<uint16_t> listen(const std::string& host, uint16_t port) override;
  // The bdev's name.
  std::string default_name(const frontend::ExportSpec& spec) const override;
  // Errors besides the interface's: InvalidArgument (allowed hosts or CHAP: NBD has
  // neither).
  Result<frontend::Export> add_export(const frontend::ExportSpec& spec) override;
  // Connected clients keep working until they disconnect. Errors: NotFound.
  Status remove_export(const std::string& name, bool force) override;
  std::vector<frontend::Export> exports() const override;
  std::string uri(const std::string& authority, const std::string& name) const override;
  // Busy: a client learns the size only when it connects.
  Status check_resize(const frontend::Export& e) const override;
  void announce_resize(const std::string&) override {}
  std::vector<frontend::Metric> metrics() const override;
  void stop() override;

  NbdServer& server() { return server_; }

 private:
  bdev::BdevRegistry& registry_;
  NbdServer server_;
};

}  // namespace castor::nbd
