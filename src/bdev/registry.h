#pragma once
// The bdev registry: creates bdevs from URIs through the module that owns the URI's
// scheme, names them, hands out descriptors and destroys them. Thread-safe; used from
// control-path threads (gRPC, engine start-up), never from the I/O path.

#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "bdev/bdev.h"
#include "common/uri.h"

namespace castor::bdev {

class BdevRegistry;

// A bdev module: one per URI scheme. register_module() is the one way a module joins a
// registry: the constructor registers the built-in modules of bdev/modules with it (a new
// one is a file there and one line in the constructor); a module built on a layer above
// (the NVMe-oF host's nvmf://) is registered with it by whoever links that layer (the
// engine's main), so the bdev layer depends on none of them. Bdevs that a layer above
// makes itself (pool replicas, nexus bdevs: no URI creates them) are not modules; they
// join with add().
class BdevModule {
 public:
  virtual ~BdevModule() = default;
  virtual const char* scheme() const = 0;
  // The name a bdev made from `uri` gets: the `name=` query option if given, else
  // module-specific (malloc: the path; uring/file: the file's base name).
  virtual Result<std::string> name_for(const Uri& uri) const;
  // Creates the bdev. Must validate everything before any side effect, so that a
  // failed create changes nothing.
  virtual Result<std::unique_ptr<Bdev>> create(const Uri& uri, const std::string& name,
                                               BdevRegistry& registry) = 0;
};

class BdevRegistry {
 public:
  explicit BdevRegistry(reactor::ReactorGroup& reactors);
  // Destroys every bdev, newest first. REQUIRES: reactors still running.
  ~BdevRegistry();

  // Makes `m` create the bdevs of its scheme (replacing a module of the same scheme).
  void register_module(std::unique_ptr<BdevModule> m);
  std::vector<std::string> schemes() const;

  // Errors: InvalidArgument (bad URI, unknown scheme, bad option), AlreadyExists
  // (name taken, also by a create in progress), NotFound (fault: base missing), IoError
  // (cannot open a file), ... The module makes the bdev without the registry's lock (a
  // remote one connects meanwhile): other calls answer while it does.
  Result<BdevInfo> create(const std::string& uri);
  // Registers a bdev built outside the modules (a pool's replica) under `uri`.
  // Errors: AlreadyExists, InvalidArgument (bad name).
  Status add(std::shared_ptr<Bdev> bdev, const std::string& uri);
  // True if no bdev has this name and none is being created under it (a hint: another
  // thread may take it next).
  bool name_free(const std::string& name) const;
  // Errors: NotFound, Busy (descriptors open or claimed by another bdev).
  Status destroy(const std::string& name);
  // Destroys every bdev, newest first (used at shutdown).
  void destroy_all();

  std::vector<BdevInfo> list() const;
  Result<BdevInfo> info(const std::string& name) const;
  Result<BdevStatsSnapshot> stats(const std::string& name) const;
  // Shared ownership keeps the object alive for a caller racing a destroy; it still
  // must hold a descriptor to do I/O.
  std::shared_ptr<Bdev> find(const std::string& name) const;

  // Opens a descriptor. Errors: NotFound, Busy (claimed).
  Result<BdevDesc> open(const std::string& name);
  // The same, and claims the bdev exclusively for `claim` (Busy if anyone holds a claim
  // on it); the claim ends with release_claim().
  Result<BdevDesc> open(const std::string& name, const Claim& claim);
  // Ends `claim` on the bdev; no-op if it holds another claim or none.
  void release_claim(const std::string& name, const Claim& claim);
  // Records that `owner` manages the bdev's lifetime (a pool owns its replicas' bdevs):
  // anyone may open it, but destroy() refuses while an owner is set (nullopt clears it).
  // Errors: NotFound.
  Status set_owner(const std::string& name, std::optional<Claim> owner);

  reactor::ReactorGroup& reactors() { return reactors_; }

 private:
  reactor::ReactorGroup& reactors_;
  mutable std::recursive_mutex mu_;
  std::map<std::string, std::unique_ptr<BdevModule>> modules_;
  std::map<std::string, std::shared_ptr<Bdev>> bdevs_;
  std::vector<std::string> order_;  // creation order
  std::set<std::string> creating_;  // names of the bdevs create() is making (not yet in bdevs_)
  bool name_free_locked(const std::string& name) const;
};

}  // namespace castor::bdev
