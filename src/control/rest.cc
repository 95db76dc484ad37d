// RestServer: the ControlService as REST/JSON. Each route builds the gRPC request from
// the path, query and JSON body, calls the gRPC method, and answers with the response as
// JSON (proto field names) or an error body {"kind", "message", "details"} with the HTTP
// status Mayastor's REST API uses for that error.

#include <google/protobuf/util/json_util.h>
#include <httplib.h>
#include <spdlog/spdlog.h>

#include <functional>

#include "control/service.h"

namespace castor::control {

namespace {

using google::protobuf::Message;

const char* code_name(grpc::StatusCode c) {
  switch (c) {
    case grpc::StatusCode::OK: return "Ok";
    case grpc::StatusCode::INVALID_ARGUMENT: return "InvalidArgument";
    case grpc::StatusCode::NOT_FOUND: return "NotFound";
    case grpc::StatusCode::ALREADY_EXISTS: return "AlreadyExists";
    case grpc::StatusCode::FAILED_PRECONDITION: return "FailedPrecondition";
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return "ResourceExhausted";
    case grpc::StatusCode::ABORTED: return "Aborted";
    case grpc::StatusCode::UNAVAILABLE: return "Unavailable";
    case grpc::StatusCode::DEADLINE_EXCEEDED: return "DeadlineExceeded";
    case grpc::StatusCode::UNIMPLEMENTED: return "Unimplemented";
    default: return "Internal";
  }
}

std::string json_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

void send_error(httplib::Response& res, grpc::StatusCode code, const std::string& msg) {
  res.status = http_status_of(code);
  res.set_content(fmt::format(R"({{"kind":"{}","message":"{}","details":""}})", code_name(code),
                              json_escape(msg)),
                  "application/json");
}

void send(httplib::Response& res, const grpc::Status& st, const Message& body) {
  if (!st.ok()) {
    send_error(res, st.error_code(), st.error_message());
    return;
  }
  std::string out;
  google::protobuf::util::JsonPrintOptions opts;
  opts.preserve_proto_field_names = true;
  opts.always_print_primitive_fields = true;
  (void)google::protobuf::util::MessageToJsonString(body, &out, opts);
  res.status = 200;
  res.set_content(out + "\n", "application/json");
}

// Parses the request body (if any) into `msg`. False (and an error reply) when it is
// not JSON for that message.
bool parse_body(const httplib::Request& req, httplib::Response& res, Message* msg) {
  if (req.body.empty()) return true;
  google::protobuf::util::JsonParseOptions opts;
  opts.ignore_unknown_fields = false;
  auto st = google::protobuf::util::JsonStringToMessage(req.body, msg, opts);
  if (!st.ok()) {
    send_error(res, grpc::StatusCode::INVALID_ARGUMENT,
               "bad JSON body: " + std::string(st.message()));
    return false;
  }
  return true;
}

bool parse_u32(const std::string& s, uint32_t* out) {
  if (s.empty() || s.size() > 10) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  if (v > UINT32_MAX) return false;
  *out = static_cast<uint32_t>(v);
  return true;
}

}  // namespace

RestServer::RestServer(ControlServiceImpl& service)
    : service_(service), http_(std::make_unique<httplib::Server>()) {
  auto& s = service_;
  auto& h = *http_;
  using Req = const httplib::Request&;
  using Res = httplib::Response&;

  h.Get("/v1/cluster", [&s](Req, Res res) {
    cv1::ClusterInfo out;
    send(res, s.GetClusterInfo(nullptr, nullptr, &out), out);
  });
  h.Get("/v1/nodes", [&s](Req, Res res) {
    cv1::ListNodesResponse out;
    send(res, s.ListNodes(nullptr, nullptr, &out), out);
  });
  h.Get(R"(/v1/nodes/([^/]+))", [&s](Req req, Res res) {
    cv1::GetNodeRequest in;
    in.set_name(req.matches[1]);
    cv1::Node out;
    send(res, s.GetNode(nullptr, &in, &out), out);
  });
  h.Put(R"(/v1/nodes/([^/]+)/cordon)", [&s](Req req, Res res) {
    cv1::CordonNodeRequest in;
    in.set_name(req.matches[1]);
    cv1::Node out;
    send(res, s.CordonNode(nullptr, &in, &out), out);
  });
  h.Delete(R"(/v1/nodes/([^/]+)/cordon)", [&s](Req req, Res res) {
    cv1::UncordonNodeRequest in;
    in.set_name(req.matches[1]);
    cv1::Node out;
    send(res, s.UncordonNode(nullptr, &in, &out), out);
  });
  h.Put(R"(/v1/nodes/([^/]+)/drain)", [&s](Req req, Res res) {
    cv1::DrainNodeRequest in;
    in.set_name(req.matches[1]);
    cv1::Node out;
    send(res, s.DrainNode(nullptr, &in, &out), out);
  });
  h.Put(R"(/v1/nodes/([^/]+)/labels)", [&s](Req req, Res res) {
    cv1::LabelNodeRequest in;
    if (!parse_body(req, res, &in)) return;
    in.set_name(req.matches[1]);
    cv1::Node out;
    send(res, s.LabelNode(nullptr, &in, &out), out);
  });

  h.Get("/v1/pools", [&s](Req req, Res res) {
    cv1::ListPoolsRequest in;
    if (req.has_param("node")) in.set_node(req.get_param_value("node"));
    cv1::ListPoolsResponse out;
    send(res, s.ListPools(nullptr, &in, &out), out);
  });
  h.Get(R"(/v1/nodes/([^/]+)/pools/([^/]+))", [&s](Req req, Res res) {
    cv1::GetPoolRequest in;
    in.set_node(req.matches[1]);
    in.set_name(req.matches[2]);
    cv1::Pool out;
    send(res, s.GetPool(nullptr, &in, &out), out);
  });
  h.Put(R"(/v1/nodes/([^/]+)/pools/([^/]+))", [&s](Req req, Res res) {
    cv1::CreatePoolRequest in;
    if (!parse_body(req, res, &in)) return;
    in.set_node(req.matches[1]);
    in.set_name(req.matches[2]);
    cv1::Pool out;
    send(res, s.CreatePool(nullptr, &in, &out), out);
  });
  h.Delete(R"(/v1/nodes/([^/]+)/pools/([^/]+))", [&s](Req req, Res res) {
    cv1::DestroyPoolRequest in;
    in.set_node(req.matches[1]);
    in.set_name(req.matches[2]);
    cv1::DestroyPoolResponse out;
    send(res, s.DestroyPool(nullptr, &in, &out), out);
  });

  h.Get("/v1/volumes", [&s](Req req, Res res) {
    cv1::ListVolumesRequest in;
    if (req.has_param("max_entries")) {
      uint32_t n = 0;
      if (!parse_u32(req.get_param_value("max_entries"), &n)) {
        send_error(res, grpc::StatusCode::INVALID_ARGUMENT, "max_entries is not a number");
        return;
      }
      in.set_max_entries(n);
    }
    if (req.has_param("starting_token")) in.set_starting_token(req.get_param_value("starting_token"));
    cv1::ListVolumesResponse out;
    send(res, s.ListVolumes(nullptr, &in, &out), out);
  });
  h.Get(R"(/v1/volumes/([^/]+))", [&s](Req req, Res res) {
    cv1::GetVolumeRequest in;
    in.set_uuid(req.matches[1]);
    cv1::Volume out;
    send(res, s.GetVolume(nullptr, &in, &out), out);
  });
  h.Put(R"(/v1/volumes/([^/]+))", [&s](Req req, Res res) {
    cv1::CreateVolumeRequest in;
    if (!parse_body(req, res, &in)) return;
    in.set_uuid(req.matches[1]);
    cv1::Volume out;
    send(res, s.CreateVolume(nullptr, &in, &out), out);
  });
  h.Delete(R"(/v1/volumes/([^/]+))", [&s](Req req, Res res) {
    cv1::DestroyVolumeRequest in;
    in.set_uuid(req.matches[1]);
    cv1::DestroyVolumeResponse out;
    send(res, s.DestroyVolume(nullptr, &in, &out), out);
  });
  h.Put(R"(/v1/volumes/([^/]+)/target)", [&s](Req req, Res res) {
    cv1::PublishVolumeRequest in;
    if (!parse_body(req, res, &in)) return;
    in.set_uuid(req.matches[1]);
    cv1::Volume out;
    send(res, s.PublishVolume(nullptr, &in, &out), out);
  });
  h.Delete(R"(/v1/volumes/([^/]+)/target)", [&s](Req req, Res res) {
    cv1::UnpublishVolumeRequest in;
    in.set_uuid(req.matches[1]);
    cv1::Volume out;
    send(res, s.UnpublishVolume(nullptr, &in, &out), out);
  });
  h.Put(R"(/v1/volumes/([^/]+)/size)", [&s](Req req, Res res) {
    cv1::ResizeVolumeRequest in;
    if (!parse_body(req, res, &in)) return;
    in.set_uuid(req.matches[1]);
    cv1::Volume out;
    send(res, s.ResizeVolume(nullptr, &in, &out), out);
  });
  h.Put(R"(/v1/volumes/([^/]+)/replica_count/([^/]+))", [&s](Req req, Res res) {
    cv1::ScaleVolumeRequest in;
    in.set_uuid(req.matches[1]);
    uint32_t n = 0;
    if (!parse_u32(req.matches[2], &n)) {
      send_error(res, grpc::StatusCode::INVALID_ARGUMENT, "replica count is not a number");
      return;
    }
    in.set_replica_count(n);
    cv1::Volume out;
    send(res, s.ScaleVolume(nullptr, &in, &out), out);
  });
  h.set_error_handler([](Req, Res res) {
    if (res.status == 404 && res.body.empty()) {
      send_error(res, grpc::StatusCode::NOT_FOUND, "no such route");
    }
  });
}

RestServer::~RestServer() { stop(); }

Result<int> RestServer::start(const std::string& listen) {
  auto colon = listen.rfind(':');
  if (colon == std::string::npos) {
    return make_error(Errc::kInvalidArgument, "REST listen address '{}' is not HOST:PORT", listen);
  }
  std::string host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  uint32_t port = 0;
  if (!parse_u32(listen.substr(colon + 1), &port) || port > 65535) {
    return make_error(Errc::kInvalidArgument, "REST listen address '{}' has a bad port", listen);
  }
  int bound = port == 0 ? http_->bind_to_any_port(host) : (http_->bind_to_port(host, static_cast<int>(port)) ? static_cast<int>(port) : -1);
  if (bound <= 0) {
    return make_error(Errc::kInvalidArgument, "cannot bind the REST API to {}", listen);
  }
  thread_ = std::thread([this] { http_->listen_after_bind(); });
  return bound;
}

void RestServer::stop() {
  if (http_) http_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace castor::control
