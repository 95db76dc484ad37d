#pragma once
// NexusManager: creates, finds and destroys the nexuses of an engine (control path,
// thread-safe). Each nexus is registered in the bdev registry as "nexus:///<name>" so
// front ends can export it like any bdev. The manager owns the worker thread that writes
// the health store and applies rebuild outcomes for its nexuses.

#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "bdev/registry.h"
#include "nexus/health_store.h"
#include "nexus/nexus.h"
#include "nexus/worker.h"

namespace castor::nexus {

class NexusManager {
 public:
  // `registry` and `store` must outlive the manager; the reactors must be running while
  // nexuses exist. `host_id`: the engine's host identifier, the one its nvmf:// children
  // connect with (nexuses with a generation register on them under it); zero: none.
  NexusManager(bdev::BdevRegistry& registry, ChildHealthStore& store, bdev::HostId host_id = {});
  // destroy_all() with its default timeout.
  ~NexusManager();
  NexusManager(const NexusManager&) = delete;
  NexusManager& operator=(const NexusManager&) = delete;

  // Errors: AlreadyExists (name taken by a nexus, one being created, or a bdev), and
  // Nexus::create's. The children are opened without the manager's lock: lookups and
  // other nexuses' calls answer while a remote child connects.
  Result<NexusInfo> create(const std::string& name, uint64_t size_bytes,
                           const std::vector<std::string>& children,
                           const NexusOptions& opts = {});
  // Stops rebuilds, drains child I/O, saves missed-write logs, unregisters the bdev and
  // closes (owned: destroys) the children. The health records are kept (the stale-child
  // rule applies to a re-created nexus); `purge` deletes them too.
  // Errors: NotFound, Busy (open descriptors on the nexus, already being destroyed, or a
  // rebuild copy, child I/O or flush that does not finish within `drain_timeout_ms`: the
  // nexus then stays as it was). find(), info() and list() answer while it waits.
  Status destroy(const std::string& name, bool purge = false, uint64_t drain_timeout_ms = 10000);
  // Destroys every nexus, as at engine exit (the destructor calls it). A nexus whose
  // destroy fails (a rebuild copy or child I/O stuck on a hung child, a flush that does
  // not finish) is given up (Nexus::give_up: copies aborted where the child can, then
  // waited for up to `drain_timeout_ms` more) and freed only once nothing in flight refers
  // to it; what still does is kept for the life of the process, with an error in the log,
  // never freed under that I/O. Errors are logged.
  void destroy_all(uint64_t drain_timeout_ms = 10000);
  std::shared_ptr<Nexus> find(const std::string& name) const;
  Result<NexusInfo> info(const std::string& name) const;
  std::vector<NexusInfo> list() const;

  ChildHealthStore& store() { return store_; }
  bdev::BdevRegistry& registry() { return registry_; }

 private:
  bdev::BdevRegistry& registry_;
  ChildHealthStore& store_;
  bdev::HostId host_id_;
  // After a failed destroy at exit: gives `n` up, then frees it (or keeps it for good).
  void tear_down(const std::string& name, const std::shared_ptr<Nexus>& n, uint64_t timeout_ms);

  ControlWorker worker_;  // destroyed after the nexuses below
  // Not held while a nexus shuts down (destroy), so lookups answer meanwhile.
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<Nexus>> nexuses_;
  std::set<std::string> creating_;    // names whose create is in progress (mu_)
  std::set<std::string> destroying_;  // names whose destroy is in progress (mu_)
};

}  // namespace castor::nexus
