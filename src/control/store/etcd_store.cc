#include "control/store/etcd_store.h"

#include "common/grpc_codes.h"

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "control/store/batch.h"
#include "etcd/etcdserver/etcdserverpb/rpc.grpc.pb.h"

namespace castor::control {

namespace pb = etcdserverpb;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

struct EtcdStore::Endpoint {
  std::string address;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<pb::KV::Stub> kv;
  std::unique_ptr<pb::Watch::Stub> watch;
  std::unique_ptr<pb::Lease::Stub> lease;
  std::unique_ptr<pb::Maintenance::Stub> maintenance;
};

namespace {

// A list() that keeps meeting compactions gives up rather than loop forever.
constexpr int kMaxListRestarts = 10;

// The range [key, range_end) of every key starting with `prefix`, in etcd's terms: an
// empty prefix is the key "\0" with range_end "\0" (all keys).
void set_prefix_range(const std::string& prefix, std::string* key, std::string* range_end) {
  if (prefix.empty()) {
    *key = std::string(1, '\0');
    *range_end = std::string(1, '\0');
    return;
  }
  *key = prefix;
  *range_end = prefix_end(prefix);
  if (range_end->empty()) *range_end = std::string(1, '\0');
}

std::chrono::system_clock::time_point deadline_in(std::chrono::milliseconds d) {
  return std::chrono::system_clock::now() + d;
}

}  // namespace

EtcdStore::EtcdStore(std::string uri, std::vector<std::string> endpoints, StoreOptions opts)
    : uri_(std::move(uri)), addresses_(std::move(endpoints)), opts_(std::move(opts)) {}

EtcdStore::~EtcdStore() {
  int64_t lease = 0;
  {
    std::lock_guard lk(mu_);
    if (!lease_lost_) lease = lease_id_;
    if (lead_ == Lead::kLeading) lead_ = Lead::kNone;
    leading_.store(false);
  }
  stop_keepalive();
  if (lease != 0) revoke(lease);
  poll_stop_.store(true);
  if (poller_.joinable()) poller_.join();
}

void EtcdStore::poll_loop() {
  // One state watch per channel, re-armed every kPollRearm: while this thread waits in
  // Next(), gRPC polls every channel's connection (see poller_ in the header).
  constexpr auto kPollRearm = std::chrono::milliseconds(200);
  auto arm = [&](size_t i) {
    auto& ch = *endpoints_[i]->channel;
    ch.NotifyOnStateChange(ch.GetState(true), deadline_in(kPollRearm), &poll_cq_,
                           reinterpret_cast<void*>(i + 1));
  };
  size_t outstanding = 0;
  for (size_t i = 0; i < endpoints_.size(); ++i, ++outstanding) arm(i);
  void* tag = nullptr;
  bool ok = false;
  while (outstanding > 0 && poll_cq_.Next(&tag, &ok)) {
    --outstanding;
    if (!poll_stop_.load()) {
      arm(reinterpret_cast<size_t>(tag) - 1);
      ++outstanding;
    }
  }
  poll_cq_.Shutdown();
  while (poll_cq_.Next(&tag, &ok)) {
  }
}

std::string EtcdStore::election_prefix() const {
  return opts_.prefix + kReservedPrefix;
}

void EtcdStore::test_pause_keepalive() {
  std::lock_guard lk(mu_);
  paused_ = true;
}

// ---- requests ----

size_t EtcdStore::pick_endpoint() const {
  const size_t n = endpoints_.size();
  const size_t first = current_.load() % n;
  for (size_t i = 0; i < n; ++i) {
    size_t idx = (first + i) % n;
    auto state = endpoints_[idx]->channel->GetState(false);
    if (state != GRPC_CHANNEL_TRANSIENT_FAILURE && state != GRPC_CHANNEL_SHUTDOWN) return idx;
  }
  return first;
}

Status EtcdStore::to_status(const char* what, const std::string& endpoint,
                            const grpc::Status& s) const {
  Errc code;
  switch (s.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      code = Errc::kUnavailable;
      break;
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::OUT_OF_RANGE:  // a compacted revision
      code = Errc::kInvalidArgument;
      break;
    case grpc::StatusCode::NOT_FOUND:
      code = Errc::kNotFound;
      break;
    case grpc::StatusCode::RESOURCE_EXHAUSTED:  // etcd: database space exceeded (alarm)
      code = Errc::kNoSpace;
      break;
    case grpc::StatusCode::CANCELLED:
      code = Errc::kAborted;
      break;
    case grpc::StatusCode::UNIMPLEMENTED:
      code = Errc::kUnsupported;
      break;
    default:
      code = Errc::kInternal;
      break;
  }
  return make_error(code, "etcd {} at {}: {}: {}", what, endpoint, grpc_code_name(s.error_code()),
                    s.error_message());
}

template <class Fn>
Status EtcdStore::call(const char* what, bool idempotent, Fn&& fn, int* code) {
  const size_t n = endpoints_.size();
  if (n == 0) return make_error(Errc::kUnavailable, "{}: not open", uri_);
  size_t idx = pick_endpoint();
  size_t last = idx;
  grpc::Status s;
  for (size_t tries = 0; tries < n; ++tries, idx = (idx + 1) % n) {
    grpc::ClientContext ctx;
    ctx.set_deadline(deadline_in(std::chrono::milliseconds(opts_.request_timeout_ms)));
    last = idx;
    s = fn(*endpoints_[idx], ctx);
    if (s.ok()) {
      current_.store(idx);
      if (code) *code = 0;
      return Status::ok();
    }
    const auto c = s.error_code();
    if (c != grpc::StatusCode::UNAVAILABLE && c != grpc::StatusCode::DEADLINE_EXCEEDED) break;
    // The next call starts elsewhere. A deadline is not retried here: the caller has
    // already waited a whole request timeout.
    current_.store((idx + 1) % n);
    if (!idempotent || c != grpc::StatusCode::UNAVAILABLE) break;
  }
  if (code) *code = static_cast<int>(s.error_code());
  return to_status(what, endpoints_[last]->address, s);
}

Status EtcdStore::open() {
  std::call_once(open_once_, [&] {
    grpc::ChannelArguments args;
    // A page of large values can exceed gRPC's default 4 MiB.
    args.SetMaxReceiveMessageSize(-1);
    // After an etcd restart the channel reconnects within a second; gRPC's default
    // back-off grows to two minutes, longer than any lease. (Not MIN_RECONNECT_BACKOFF:
    // gRPC also uses it as the timeout of one connection attempt.)
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    for (const auto& a : addresses_) {
      auto ep = std::make_unique<Endpoint>();
      ep->address = a;
      ep->channel = grpc::CreateCustomChannel(a, grpc::InsecureChannelCredentials(), args);
      ep->kv = pb::KV::NewStub(ep->channel);
      ep->watch = pb::Watch::NewStub(ep->channel);
      ep->lease = pb::Lease::NewStub(ep->channel);
      ep->maintenance = pb::Maintenance::NewStub(ep->channel);
      endpoints_.push_back(std::move(ep));
    }
    poller_ = std::thread([this] { poll_loop(); });
  });
  pb::StatusResponse resp;
  Status s = call("status", true, [&](Endpoint& ep, grpc::ClientContext& ctx) {
    return ep.maintenance->Status(&ctx, pb::StatusRequest(), &resp);
  });
  if (!s) return make_error(Errc::kUnavailable, "cannot reach etcd ({}): {}", uri_, s.message());
  spdlog::info("store {}: connected to etcd {} at {}, revision {}", uri_, resp.version(),
               endpoints_[current_.load()]->address, resp.header().revision());
  for (const auto& e : resp.errors()) spdlog::warn("store {}: etcd reports: {}", uri_, e);
  return Status::ok();
}

// ---- reads ----

Result<std::optional<KeyValue>> EtcdStore::get(const std::string& key) {
  pb::RangeRequest req;
  req.set_key(full_key(key));
  pb::RangeResponse resp;
  Status s = call("get", true, [&](Endpoint& ep, grpc::ClientContext& ctx) {
    return ep.kv->Range(&ctx, req, &resp);
  });
  if (!s) return s;
  if (resp.kvs_size() == 0) return std::optional<KeyValue>();
  const auto& kv = resp.kvs(0);
  return std::optional<KeyValue>(KeyValue{key, kv.value(), kv.mod_revision()});
}

Result<std::vector<KeyValue>> EtcdStore::list(const std::string& prefix) {
  std::string first;
  std::string range_end;
  set_prefix_range(full_key(prefix), &first, &range_end);
  const size_t strip = opts_.prefix.size();
  for (int attempt = 0;; ++attempt) {
    std::vector<KeyValue> out;
    std::string start = first;
    int64_t revision = 0;  // of the first page; then every page reads at it
    bool restart = false;
    for (;;) {
      pb::RangeRequest req;
      req.set_key(start);
      req.set_range_end(range_end);
      req.set_limit(opts_.page_limit);
      req.set_revision(revision);
      // No sort order: etcd returns keys in ascending order by itself, while any explicit
      // order (even ascending by key) makes it read the whole range for every page
      // before applying the limit.
      pb::RangeResponse resp;
      int code = 0;
      Status s = call(
          "list", true,
          [&](Endpoint& ep, grpc::ClientContext& ctx) { return ep.kv->Range(&ctx, req, &resp); },
          &code);
      if (!s) {
        if (code == static_cast<int>(grpc::StatusCode::OUT_OF_RANGE) && revision != 0 &&
            attempt < kMaxListRestarts) {
          restart = true;  // our snapshot was compacted between two pages
          break;
        }
        return s;
      }
      if (revision == 0) revision = resp.header().revision();
      for (const auto& kv : resp.kvs()) {
        std::string key = kv.key().substr(std::min(strip, kv.key().size()));
        if (key.starts_with(kReservedPrefix)) continue;
        out.push_back(KeyValue{std::move(key), kv.value(), kv.mod_revision()});
      }
      if (!resp.more() || resp.kvs_size() == 0) break;
      // The next page starts just after the last key of this one.
      start = resp.kvs(resp.kvs_size() - 1).key() + std::string(1, '\0');
    }
    if (!restart) return out;
    spdlog::debug("store {}: list '{}' restarts: revision {} was compacted", uri_, prefix,
                  revision);
  }
}

// ---- writes ----

Status EtcdStore::commit(const std::vector<StoreOp>& ops,
                         const std::vector<StoreCompare>& compares) {
  if (Status s = check_batch(ops, compares); !s) return s;
  std::string fence_key;
  int64_t fence_rev = 0;
  {
    std::lock_guard lk(mu_);
    if (!leading_.load()) {
      return make_error(Errc::kAborted, "{}: not the leader{}", uri_,
                        lead_ == Lead::kLost ? " (leadership lost)" : "");
    }
    fence_key = election_key_;
    fence_rev = election_rev_;
  }

  pb::TxnRequest txn;
  // The fence: our election key still exists and is the one we created. A lease expiry
  // (or a delete) removes it; a re-created key has another create revision.
  {
    auto* c = txn.add_compare();
    c->set_key(fence_key);
    c->set_target(pb::Compare::CREATE);
    c->set_result(pb::Compare::EQUAL);
    c->set_create_revision(fence_rev);
  }
  for (const auto& sc : compares) {
    auto* c = txn.add_compare();
    c->set_key(full_key(sc.key));
    c->set_result(pb::Compare::EQUAL);
    if (sc.mod_revision == 0) {
      c->set_target(pb::Compare::CREATE);  // absent: etcd compares a missing key as all zeros
      c->set_create_revision(0);
    } else {
      c->set_target(pb::Compare::MOD);
      c->set_mod_revision(sc.mod_revision);
    }
  }
  for (const auto& op : ops) {
    auto* r = txn.add_success();
    if (op.kind == StoreOp::Kind::kPut) {
      auto* p = r->mutable_request_put();
      p->set_key(full_key(op.key));
      p->set_value(op.value);
    } else {
      r->mutable_request_delete_range()->set_key(full_key(op.key));
    }
  }
  // On failure, read the fence key and every compared key in the same snapshot, to tell
  // "fenced" from "a compare failed" (and which) without a race.
  txn.add_failure()->mutable_request_range()->set_key(fence_key);
  for (const auto& sc : compares) {
    auto* r = txn.add_failure()->mutable_request_range();
    r->set_key(full_key(sc.key));
    r->set_keys_only(true);
  }

  pb::TxnResponse resp;
  Status s = call("commit", false, [&](Endpoint& ep, grpc::ClientContext& ctx) {
    return ep.kv->Txn(&ctx, txn, &resp);
  });
  if (!s) return s;
  if (resp.succeeded()) return Status::ok();

  if (resp.responses_size() != 1 + static_cast<int>(compares.size())) {
    return make_error(Errc::kInternal, "{}: failed Txn answered {} responses, expected {}", uri_,
                      resp.responses_size(), 1 + compares.size());
  }
  const auto& fence = resp.responses(0).response_range();
  if (fence.kvs_size() == 0 || fence.kvs(0).create_revision() != fence_rev) {
    std::string why = fence.kvs_size() == 0
                          ? fmt::format("election key {} is gone", fence_key)
                          : fmt::format("election key {} was re-created at revision {}", fence_key,
                                        fence.kvs(0).create_revision());
    fence_broken(why);
    return make_error(Errc::kAborted, "{}: not the leader: {}", uri_, why);
  }
  for (size_t i = 0; i < compares.size(); ++i) {
    const auto& r = resp.responses(static_cast<int>(i) + 1).response_range();
    int64_t found = r.kvs_size() ? r.kvs(0).mod_revision() : 0;
    if (found != compares[i].mod_revision) {
      return make_error(Errc::kBusy, "compare failed: '{}' is at revision {}, expected {}",
                        compares[i].key, found, compares[i].mod_revision);
    }
  }
  // Not expected (the failure branch reads the snapshot the compares saw), but etcd
  // said the Txn did not apply: nothing was written.
  return make_error(Errc::kBusy, "compare failed");
}

Status EtcdStore::compact() {
  pb::RangeRequest probe;
  probe.set_key(election_prefix());
  probe.set_count_only(true);
  pb::RangeResponse presp;
  Status s = call("compact (revision)", true, [&](Endpoint& ep, grpc::ClientContext& ctx) {
    return ep.kv->Range(&ctx, probe, &presp);
  });
  if (!s) return s;
  const int64_t revision = presp.header().revision();
  pb::CompactionRequest req;
  req.set_revision(revision);
  req.set_physical(false);
  pb::CompactionResponse resp;
  int code = 0;
  s = call(
      "compact", true,
      [&](Endpoint& ep, grpc::ClientContext& ctx) { return ep.kv->Compact(&ctx, req, &resp); },
      &code);
  // Already compacted at or past `revision` (by us on a retry, or by someone else).
  if (!s && code != static_cast<int>(grpc::StatusCode::OUT_OF_RANGE)) return s;
  int64_t prev = compacted_revision_.load();
  while (prev < revision && !compacted_revision_.compare_exchange_weak(prev, revision)) {
  }
  spdlog::info("store {}: compacted to revision {}", uri_, revision);
  return Status::ok();
}

Result<StoreStats> EtcdStore::stats() {
  pb::StatusResponse st;
  Status s = call("status", true, [&](Endpoint& ep, grpc::ClientContext& ctx) {
    return ep.maintenance->Status(&ctx, pb::StatusRequest(), &st);
  });
  if (!s) return s;
  auto all = list("");
  if (!all) return all.status();
  StoreStats out;
  out.keys = all->size();
  for (const auto& kv : *all) out.bytes += kv.key.size() + kv.value.size();
  out.file_bytes = static_cast<uint64_t>(std::max<int64_t>(st.dbsize(), 0));
  out.revision = st.header().revision();
  out.compacted_revision = compacted_revision_.load();
  return out;
}

// ---- leadership ----

Result<std::string> EtcdStore::leader() {
  pb::RangeRequest req;
  std::string key;
  std::string end;
  set_prefix_range(election_prefix(), &key, &end);
  req.set_key(key);
  req.set_range_end(end);
  req.set_sort_target(pb::RangeRequest::CREATE);
  req.set_sort_order(pb::RangeRequest::ASCEND);
  req.set_limit(1);
  pb::RangeResponse resp;
  Status s = call("leader", true, [&](Endpoint& ep, grpc::ClientContext& ctx) {
    return ep.kv->Range(&ctx, req, &resp);
  });
  if (!s) return s;
  if (resp.kvs_size() == 0) return make_error(Errc::kNotFound, "{}: no leader", uri_);
  return resp.kvs(0).value();
}

Status EtcdStore::acquire_leadership(const std::string& identity, std::stop_token stop,
                                     std::function<void()> on_lost) {
  {
    std::lock_guard lk(mu_);
    if (acquire_called_) {
      return make_error(Errc::kInvalidArgument, "{}: acquire_leadership called twice", uri_);
    }
    acquire_called_ = true;
    identity_ = identity;
    on_lost_ = std::move(on_lost);
    lead_ = Lead::kCampaigning;
  }
  if (endpoints_.empty()) return make_error(Errc::kUnavailable, "{}: not open", uri_);

  auto backoff = 200ms;
  std::mutex sleep_mu;
  std::condition_variable_any sleep_cv;
  for (int failures = 0;;) {
    Status s = stop.stop_requested() ? Status(Errc::kAborted, "stopped") : campaign(stop);
    if (s) return s;
    if (stop.stop_requested()) {
      // Withdraw: a standby's key would otherwise stay in the queue until its lease ends.
      int64_t lease = 0;
      {
        std::lock_guard lk(mu_);
        if (!lease_lost_) lease = lease_id_;
        lease_lost_ = true;
        lead_ = Lead::kNone;
      }
      stop_keepalive();
      if (lease != 0) revoke(lease);
      return make_error(Errc::kAborted, "{}: stopped while waiting for leadership", uri_);
    }
    if (s.code() == Errc::kInvalidArgument || s.code() == Errc::kUnsupported) return s;
    if (failures++ % 10 == 0) {
      spdlog::warn("store {}: campaign: {} (retrying)", uri_, s.to_string());
    }
    std::unique_lock lk(sleep_mu);
    sleep_cv.wait_for(lk, stop, backoff, [] { return false; });
    backoff = std::min<std::chrono::milliseconds>(backoff * 2, 2s);
  }
}

Status EtcdStore::campaign(std::stop_token stop) {
  // 1. A live lease, kept alive by its own thread.
  bool need_lease;
  int64_t old_lease = 0;
  {
    std::lock_guard lk(mu_);
    need_lease = lease_id_ == 0 || lease_lost_;
    if (need_lease) old_lease = lease_id_;
  }
  if (need_lease) {
    stop_keepalive();
    if (old_lease != 0) revoke(old_lease);  // no-op if it expired; frees it if we gave up
    pb::LeaseGrantRequest req;
    req.set_ttl(opts_.lease_ttl_s);
    pb::LeaseGrantResponse resp;
    const auto granted_at = Clock::now();  // the lease's TTL starts no earlier
    Status s = call("lease grant", true, [&](Endpoint& ep, grpc::ClientContext& ctx) {
      return ep.lease->LeaseGrant(&ctx, req, &resp);
    });
    if (!s) return s;
    if (!resp.error().empty() || resp.id() == 0) {
      return make_error(Errc::kUnavailable, "{}: lease grant refused: {}", uri_, resp.error());
    }
    // etcd may grant more than asked (its minimum TTL); keep-alives follow the real one.
    const int64_t ttl = std::max<int64_t>(resp.ttl(), 1);
    {
      std::lock_guard lk(mu_);
      lease_id_ = resp.id();
      lease_lost_ = false;
      fence_broken_ = false;
      election_key_ = election_prefix() + fmt::format("{:x}", static_cast<uint64_t>(resp.id()));
      election_rev_ = 0;
    }
    keepalive_ = std::jthread([this, lease = resp.id(), ttl, granted_at](std::stop_token st) {
      keepalive_loop(st, lease, ttl, granted_at);
    });
  }

  std::string key;
  int64_t lease;
  int64_t rev;
  {
    std::lock_guard lk(mu_);
    key = election_key_;
    lease = lease_id_;
    rev = election_rev_;
  }

  // 2. Our key, created once: a retried Txn finds it and reads its create revision.
  if (rev == 0) {
    pb::TxnRequest txn;
    auto* c = txn.add_compare();
    c->set_key(key);
    c->set_target(pb::Compare::CREATE);
    c->set_result(pb::Compare::EQUAL);
    c->set_create_revision(0);
    auto* put = txn.add_success()->mutable_request_put();
    put->set_key(key);
    put->set_value(identity_);
    put->set_lease(lease);
    txn.add_failure()->mutable_request_range()->set_key(key);
    pb::TxnResponse resp;
    Status s = call("campaign", true, [&](Endpoint& ep, grpc::ClientContext& ctx) {
      return ep.kv->Txn(&ctx, txn, &resp);
    });
    if (!s) return s;
    if (resp.succeeded()) {
      rev = resp.header().revision();
    } else {
      const auto& r = resp.responses(0).response_range();
      if (r.kvs_size() == 0)
        return make_error(Errc::kUnavailable, "{}: election key vanished", uri_);
      rev = r.kvs(0).create_revision();
    }
    std::lock_guard lk(mu_);
    if (lease_lost_)
      return make_error(Errc::kUnavailable, "{}: lease lost while campaigning", uri_);
    election_rev_ = rev;
  }

  // 3. Wait until no older candidate is left.
  std::string range_key;
  std::string range_end;
  set_prefix_range(election_prefix(), &range_key, &range_end);
  for (;;) {
    if (stop.stop_requested()) return make_error(Errc::kAborted, "stopped");
    {
      std::lock_guard lk(mu_);
      if (lease_lost_)
        return make_error(Errc::kUnavailable, "{}: lease lost while campaigning", uri_);
    }
    pb::RangeRequest req;
    req.set_key(range_key);
    req.set_range_end(range_end);
    req.set_sort_target(pb::RangeRequest::CREATE);
    req.set_sort_order(pb::RangeRequest::DESCEND);
    req.set_max_create_revision(rev - 1);
    req.set_limit(1);
    pb::RangeResponse resp;
    Status s = call("campaign", true, [&](Endpoint& ep, grpc::ClientContext& ctx) {
      return ep.kv->Range(&ctx, req, &resp);
    });
    if (!s) return s;
    if (resp.kvs_size() > 0) {
      if (Status w = wait_deleted(resp.kvs(0).key(), resp.header().revision() + 1, stop); !w) {
        return w;
      }
      continue;
    }
    // Nobody older. Our own key must still be ours (the lease may have run out while we
    // waited); if it is not, campaign again with a new lease.
    pb::RangeRequest own;
    own.set_key(key);
    pb::RangeResponse oresp;
    s = call("campaign", true, [&](Endpoint& ep, grpc::ClientContext& ctx) {
      return ep.kv->Range(&ctx, own, &oresp);
    });
    if (!s) return s;
    std::lock_guard lk(mu_);
    if (oresp.kvs_size() == 0 || oresp.kvs(0).create_revision() != rev) {
      lease_lost_ = true;
      return make_error(Errc::kUnavailable, "{}: election key {} vanished while campaigning", uri_,
                        key);
    }
    if (lease_lost_)
      return make_error(Errc::kUnavailable, "{}: lease lost while campaigning", uri_);
    lead_ = Lead::kLeading;
    leading_.store(true);
    spdlog::info("store {}: leading as '{}' (lease {:x}, election revision {})", uri_, identity_,
                 static_cast<uint64_t>(lease), rev);
    return Status::ok();
  }
}

Status EtcdStore::wait_deleted(const std::string& key, int64_t from_revision,
                               std::stop_token stop) {
  Endpoint& ep = *endpoints_[pick_endpoint()];
  grpc::ClientContext ctx;
  // Look again now and then even if no event comes (a silently broken connection).
  ctx.set_deadline(deadline_in(std::chrono::seconds(std::max<uint32_t>(opts_.lease_ttl_s, 2))));
  {
    std::lock_guard lk(mu_);
    if (lease_lost_) return Status::ok();  // the caller sees it
    watch_ctx_ = &ctx;
  }
  std::stop_callback cancel_on_stop(stop, [&ctx] { ctx.TryCancel(); });
  bool deleted = false;
  auto stream = ep.watch->Watch(&ctx);
  pb::WatchRequest req;
  auto* create = req.mutable_create_request();
  create->set_key(key);
  create->set_start_revision(from_revision);
  create->add_filters(pb::WatchCreateRequest::NOPUT);
  if (stream->Write(req)) {
    pb::WatchResponse resp;
    while (!deleted && stream->Read(&resp)) {
      if (resp.canceled()) break;  // e.g. from_revision compacted: the caller looks again
      for (const auto& ev : resp.events()) {
        if (ev.type() == mvccpb::Event::DELETE) deleted = true;
      }
    }
  }
  ctx.TryCancel();  // etcd never ends a watch stream by itself
  grpc::Status s = stream->Finish();
  {
    std::lock_guard lk(mu_);
    watch_ctx_ = nullptr;
  }
  if (deleted || stop.stop_requested()) return Status::ok();
  if (s.error_code() == grpc::StatusCode::UNAVAILABLE) {
    current_.store((current_.load() + 1) % endpoints_.size());
    return to_status("watch", ep.address, s);
  }
  return Status::ok();  // deadline, cancelled or canceled by etcd: look again
}

Result<int64_t> EtcdStore::keepalive_once(int64_t lease, std::chrono::milliseconds timeout) {
  // One short LeaseKeepAlive stream per exchange, each with its own deadline: a sync
  // stream kept open would block in Read() on a dead connection with nothing to bound
  // it, past the lease's TTL.
  pb::LeaseKeepAliveResponse resp;
  const size_t n = endpoints_.size();
  size_t idx = pick_endpoint();
  size_t last = idx;
  grpc::Status s;
  for (size_t tries = 0; tries < n; ++tries, idx = (idx + 1) % n) {
    grpc::ClientContext ctx;
    ctx.set_deadline(deadline_in(timeout));
    last = idx;
    auto stream = endpoints_[idx]->lease->LeaseKeepAlive(&ctx);
    pb::LeaseKeepAliveRequest req;
    req.set_id(lease);
    bool ok = stream->Write(req) && stream->Read(&resp);
    if (ok) {
      stream->WritesDone();
      s = stream->Finish();
      current_.store(idx);
      return resp.ttl();
    }
    s = stream->Finish();
    if (s.error_code() != grpc::StatusCode::UNAVAILABLE) break;
  }
  return to_status("keep-alive", endpoints_[last]->address, s);
}

void EtcdStore::keepalive_loop(std::stop_token stop, int64_t lease, int64_t ttl_s,
                               Clock::time_point granted_at) {
  const auto ttl = std::chrono::milliseconds(ttl_s * 1000);
  const auto interval = ttl / 3;
  const auto timeout = std::chrono::milliseconds(opts_.request_timeout_ms);
  Clock::time_point confirmed = granted_at;  // the lease surely lives until confirmed + ttl
  Clock::time_point next = Clock::now() + interval;
  std::string why;
  int failures = 0;  // keep-alives failed in a row

  std::unique_lock lk(mu_);
  for (;;) {
    cv_.wait_until(lk, stop, next, [&] { return fence_broken_; });
    if (stop.stop_requested()) return;  // resign or a new campaign: the caller revokes
    if (fence_broken_) {
      why = "a commit was refused by the fence";
      break;
    }
    if (paused_) {
      next = Clock::now() + interval;
      continue;
    }
    if (Clock::now() - confirmed >= ttl) {
      why = fmt::format("no keep-alive confirmed for the lease's TTL ({} s)", ttl_s);
      break;
    }
    const std::string key = election_key_;
    const int64_t rev = election_rev_;
    lk.unlock();

    const auto sent = Clock::now();
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(confirmed + ttl - sent);
    auto r = keepalive_once(lease, std::clamp(left, std::chrono::milliseconds(1), timeout));
    bool ok = false;
    if (r && *r <= 0) {
      why = fmt::format("lease {:x} expired", static_cast<uint64_t>(lease));
      lk.lock();
      break;
    }
    if (r) {
      confirmed = sent;
      ok = true;
      // The fence is the key, not the lease: someone deleting it ends the leadership too.
      if (rev != 0) {
        pb::RangeRequest req;
        req.set_key(key);
        pb::RangeResponse resp;
        Status s = call("election key check", true, [&](Endpoint& ep, grpc::ClientContext& ctx) {
          return ep.kv->Range(&ctx, req, &resp);
        });
        if (s && (resp.kvs_size() == 0 || resp.kvs(0).create_revision() != rev)) {
          why = fmt::format("election key {} was deleted", key);
          lk.lock();
          break;
        }
      }
      if (failures > 0) {
        spdlog::info("store {}: keep-alives answered again after {} failures", uri_, failures);
      }
      failures = 0;
    } else if (failures++ == 0) {
      // Once per outage; the loss itself is logged as an error.
      spdlog::warn("store {}: {}", uri_, r.status().to_string());
    }
    // After a failure, retry soon: the TTL is running.
    next =
        ok ? sent + interval : Clock::now() + std::min<std::chrono::milliseconds>(interval, 500ms);
    lk.lock();
  }

  // Lost (lk held).
  lease_lost_ = true;
  const bool was_leading = lead_ == Lead::kLeading;
  if (was_leading) lead_ = Lead::kLost;
  leading_.store(false);
  if (watch_ctx_) watch_ctx_->TryCancel();
  auto on_lost = was_leading ? on_lost_ : nullptr;
  lk.unlock();
  if (was_leading) {
    spdlog::error("store {}: leadership lost: {}", uri_, why);
  } else {
    spdlog::warn("store {}: campaign lease lost: {}", uri_, why);
  }
  // Give the lease up now, so that the next candidate need not wait for its expiry.
  revoke(lease);
  if (on_lost) on_lost();
}

void EtcdStore::fence_broken(const std::string& why) {
  std::lock_guard lk(mu_);
  leading_.store(false);
  fence_broken_ = true;
  spdlog::error("store {}: commit refused by the fence: {}", uri_, why);
  cv_.notify_all();
}

void EtcdStore::stop_keepalive() {
  if (!keepalive_.joinable()) return;
  keepalive_.request_stop();  // wakes its wait (the stop_token overload)
  keepalive_.join();
}

void EtcdStore::revoke(int64_t lease) {
  pb::LeaseRevokeRequest req;
  req.set_id(lease);
  pb::LeaseRevokeResponse resp;
  Status s = call("lease revoke", true, [&](Endpoint& ep, grpc::ClientContext& ctx) {
    return ep.lease->LeaseRevoke(&ctx, req, &resp);
  });
  if (!s && s.code() != Errc::kNotFound) {
    spdlog::warn("store {}: cannot revoke lease {:x}: {}", uri_, static_cast<uint64_t>(lease),
                 s.to_string());
  }
}

}  // namespace castor::control
