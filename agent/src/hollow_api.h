#pragma once
// The local API's hollow clock (docs/hollow-nodes.md): GET and POST /v1/hollow/clock, a hollow
// node's simulated time, which a test moves to open or close the node's maintenance windows.

#include "modules.h"
#include "outpost/agent/api_server.h"
#include "outpost/core/log.h"

namespace outpost::agent {

// GET /v1/hollow/clock: {"time": RFC 3339 UTC, "offsetSeconds": s from the host's clock}; 409 when
// the node is not hollow.
ApiResponse getHollowClock(DeployModule& deploy);
// POST /v1/hollow/clock {"time": <unix ms> | null}: the node's time from now on (null: the host's
// again); answers as GET. 400 naming a bad body, 409 when the node is not hollow.
ApiResponse postHollowClock(DeployModule& deploy, const ApiRequest& req, const core::Logger& log);

}  // namespace outpost::agent
