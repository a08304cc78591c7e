#pragma once
// The local API's on-site holds (docs/local-api.md): GET /v1/holds, POST /v1/holds,
// POST /v1/holds/release, answered from deploy.

#include <nlohmann/json.hpp>

#include "modules.h"
#include "outpost/agent/api_server.h"

namespace outpost::agent {

// GET /v1/holds: {"holds":[{"pod","until"?}],"held":[{"pod","runningVersion","pendingVersion",
// "deletion","reason","message","heldUntil"?}]}.
ApiResponse getHolds(DeployModule& deploy);
// POST /v1/holds {"pods":["<ns>/<name>"|"<name>",...],"until":<unix ms>?}: then the holds.
ApiResponse postHold(DeployModule& deploy, const ApiRequest& req);
// POST /v1/holds/release {"pods":[...]}: then the holds.
ApiResponse postRelease(DeployModule& deploy, const ApiRequest& req);
// The holds as /v1/status shows them ("holds" and "held"), or null when deploy does not answer.
nlohmann::json holdsJson(DeployModule& deploy);

}  // namespace outpost::agent
