#include "nexus/child_bdev.h"

#include <spdlog/spdlog.h>

#include "common/uri.h"

namespace castor::nexus {

using bdev::IoType;
using bdev::io_type_bit;

uint32_t ops_of(const bdev::Bdev& b) {
  uint32_t m = 0;
  for (int t = 0; t < bdev::kNumIoTypes; ++t) {
    if (b.supports(static_cast<IoType>(t))) m |= io_type_bit(static_cast<IoType>(t));
  }
  return m;
}

Result<std::shared_ptr<Child>> open_child_bdev(bdev::BdevRegistry& reg, const std::string& nexus,
                                               const std::string& uri) {
  auto u = Uri::parse(uri);
  if (!u) return u.status();
  auto c = std::make_shared<Child>();
  c->uri = uri;
  if (u->scheme == "bdev") {
    c->bdev_name = u->name_from_path();
    if (c->bdev_name.empty()) {
      return make_error(Errc::kInvalidArgument, "child URI '{}' names no bdev", uri);
    }
  } else if (u->scheme == "nexus") {
    return make_error(Errc::kInvalidArgument, "a nexus cannot be a child of a nexus ('{}')", uri);
  } else {
    auto info = reg.create(uri);
    if (!info) return info.status();
    c->bdev_name = info->name;
    c->owned = true;
  }
  auto desc = reg.open(c->bdev_name, bdev::Claim::nexus(nexus));
  if (!desc) {
    if (c->owned) (void)reg.destroy(c->bdev_name);
    return desc.status();
  }
  c->desc = std::move(desc.value());
  c->bdev = reg.find(c->bdev_name);
  c->local = c->bdev->module() != "nvmf";
  return c;
}

void close_child_bdev(bdev::BdevRegistry& reg, const std::string& nexus, Child& c) {
  if (!c.desc) return;
  c.desc.close();
  reg.release_claim(c.bdev_name, bdev::Claim::nexus(nexus));
  c.bdev.reset();
  if (c.owned) {
    if (auto st = reg.destroy(c.bdev_name); !st) {
      spdlog::warn("nexus={} cannot destroy child bdev {}: {}", nexus, c.bdev_name,
                   st.to_string());
    }
  }
}

}  // namespace castor::nexus
