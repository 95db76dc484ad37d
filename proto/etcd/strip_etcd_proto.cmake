# cmake -DIN=<etcd .proto> -DOUT=<staged .proto> -P strip_etcd_proto.cmake
#
# Stages one of etcd's .proto files for protoc's C++ generator. etcd annotates its
# protos for gogoproto (Go marshalling options) and grpc-gateway (HTTP routes); neither
# matters to a C++ client and neither's .proto is installed with etcd, so the imports and
# every `(gogoproto.*)` / `(google.api.http)` option are removed. Messages, fields and
# services are left exactly as they are, so the wire format is etcd's own.
file(READ "${IN}" text)
string(REGEX REPLACE "import \"gogoproto/gogo.proto\";" "" text "${text}")
string(REGEX REPLACE "import \"google/api/annotations.proto\";" "" text "${text}")
# File options: option (gogoproto.marshaler_all) = true;
string(REGEX REPLACE "option \\(gogoproto\\.[A-Za-z_]+\\) = [A-Za-z_]+;" "" text "${text}")
# Method options: option (google.api.http) = { post: "/v3/kv/range" body: "*" }; some
# with one nested block (additional_bindings { ... }).
string(REGEX REPLACE "option \\(google\\.api\\.http\\) = {([^{}]|{[^{}]*})*};" "" text
       "${text}")
# Field options (none in etcd 3.4's API protos, but later releases add some):
# [(gogoproto.nullable) = false] and the gogoproto part of a longer option list.
string(REGEX REPLACE " *\\[\\(gogoproto\\.[A-Za-z_]+\\) = [^],]*\\]" "" text "${text}")
string(REGEX REPLACE "\\(gogoproto\\.[A-Za-z_]+\\) = [^],]*, *" "" text "${text}")
if(text MATCHES "gogoproto|google\\.api")
  message(FATAL_ERROR "${IN}: gogoproto or google.api annotations left after stripping")
endif()
file(WRITE "${OUT}" "${text}")
