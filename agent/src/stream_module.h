#pragma once
// The stream tunnel to CloudCore (outpost::stream) as a lifecycle unit: started after the cloud
// link when cloud.websocket.stream_server names one, with the cloud link's TLS files. What it
// serves comes from deploy (DeployRuntimeStreams: only pods this node runs) and exec and attach
// sessions go to the runtime's streaming server through stream::UpgradeRelay.

#include <memory>
#include <string>

#include "modules.h"
#include "outpost/stream/tunnel.h"
#include "runtime_streams.h"

namespace outpost::agent {

class StreamModule final : public Module {
 public:
  StreamModule(Context ctx, DeployModule* deploy);
  ~StreamModule() override;
  std::string name() const override { return "stream"; }
  core::Status start() override;
  void stop() override;
  std::string describe() const override;
  // nullopt when the tunnel is off; any thread.
  std::optional<stream::TunnelStatus> status() const;

 private:
  Context ctx_;
  std::unique_ptr<DeployRuntimeStreams> streams_;  // logs, exec, attach and top over deploy
  std::unique_ptr<stream::Tunnel> tunnel_;
};

}  // namespace outpost::agent
