#pragma once
// The local API handlers' JSON answers: a body, or {"error": why} with the status.

#include <nlohmann/json.hpp>
#include <string>

#include "outpost/agent/api_server.h"

namespace outpost::agent {

inline ApiResponse jsonAnswer(int status, const nlohmann::json& body) {
  return {status, "application/json", body.dump()};
}

inline ApiResponse errorAnswer(int status, const std::string& why) {
  return jsonAnswer(status, nlohmann::json{{"error", why}});
}

}  // namespace outpost::agent
