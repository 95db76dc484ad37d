#pragma once
namespace castor {
inline constexpr const char* kVersion = "0.1.0";
}
