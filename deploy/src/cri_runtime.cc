// CriRuntime: Runtime over CRI v1, unary gRPC calls on deploy's own HTTP/2 caller (grpc_h2.h).
// protobuf stays in this file.

#include "outpost/deploy/cri_runtime.h"

#include <memory>

#include "api.pb.h"
#include "grpc_h2.h"

namespace outpost::deploy {
namespace {

namespace cri = ::runtime::v1;
using core::Result;
using core::Status;

using Deadline = h2::Deadline;

Labels toLabels(const google::protobuf::Map<std::string, std::string>& m) {
  return Labels(m.begin(), m.end());
}

void fillMap(google::protobuf::Map<std::string, std::string>* out, const Labels& in) {
  for (const auto& [k, v] : in) (*out)[k] = v;
}

void fillSecurity(cri::LinuxContainerSecurityContext* out, const SecurityContext& in,
                  bool hostNetwork) {
  if (in.runAsUser) out->mutable_run_as_user()->set_value(*in.runAsUser);
  if (in.runAsGroup) out->mutable_run_as_group()->set_value(*in.runAsGroup);
  for (auto g : in.supplementalGroups) out->add_supplemental_groups(g);
  out->set_privileged(in.privileged);
  out->set_readonly_rootfs(in.readOnlyRootfs);
  out->set_no_new_privs(in.noNewPrivs);
  for (const auto& c : in.capAdd) out->mutable_capabilities()->add_add_capabilities(c);
  for (const auto& c : in.capDrop) out->mutable_capabilities()->add_drop_capabilities(c);
  auto* ns = out->mutable_namespace_options();
  ns->set_network(hostNetwork ? cri::NODE : cri::POD);
  ns->set_pid(cri::CONTAINER);
  ns->set_ipc(cri::POD);
}

void fillSandboxConfig(cri::PodSandboxConfig* out, const PodSandboxConfig& in) {
  auto* md = out->mutable_metadata();
  md->set_name(in.name);
  md->set_uid(in.uid);
  md->set_namespace_(in.podNamespace);
  md->set_attempt(in.attempt);
  if (!in.hostNetwork) out->set_hostname(in.hostname);
  out->set_log_directory(in.logDirectory);
  fillMap(out->mutable_labels(), in.labels);
  fillMap(out->mutable_annotations(), in.annotations);
  auto* lx = out->mutable_linux();
  lx->set_cgroup_parent(in.cgroupParent);
  auto* sc = lx->mutable_security_context();
  auto* ns = sc->mutable_namespace_options();
  ns->set_network(in.hostNetwork ? cri::NODE : cri::POD);
  ns->set_pid(cri::CONTAINER);
  ns->set_ipc(cri::POD);
  if (in.security.runAsUser) sc->mutable_run_as_user()->set_value(*in.security.runAsUser);
  if (in.security.runAsGroup) sc->mutable_run_as_group()->set_value(*in.security.runAsGroup);
  for (auto g : in.security.supplementalGroups) sc->add_supplemental_groups(g);
  sc->set_privileged(in.security.privileged);
}

PodSandbox fromSandbox(const cri::PodSandbox& p) {
  PodSandbox s;
  s.id = p.id();
  s.name = p.metadata().name();
  s.uid = p.metadata().uid();
  s.podNamespace = p.metadata().namespace_();
  s.attempt = p.metadata().attempt();
  s.state = p.state() == cri::SANDBOX_READY ? SandboxState::kReady : SandboxState::kNotReady;
  s.createdAt = p.created_at();
  s.labels = toLabels(p.labels());
  s.annotations = toLabels(p.annotations());
  s.runtimeHandler = p.runtime_handler();
  return s;
}

ContainerState fromState(cri::ContainerState s) {
  switch (s) {
    case cri::CONTAINER_CREATED:
      return ContainerState::kCreated;
    case cri::CONTAINER_RUNNING:
      return ContainerState::kRunning;
    case cri::CONTAINER_EXITED:
      return ContainerState::kExited;
    default:
      return ContainerState::kUnknown;
  }
}

cri::ContainerState toState(ContainerState s) {
  switch (s) {
    case ContainerState::kCreated:
      return cri::CONTAINER_CREATED;
    case ContainerState::kRunning:
      return cri::CONTAINER_RUNNING;
    case ContainerState::kExited:
      return cri::CONTAINER_EXITED;
    default:
      return cri::CONTAINER_UNKNOWN;
  }
}

UsageStats fromUsage(const cri::CpuUsage& cpu, const cri::MemoryUsage& memory, bool hasCpu,
                     bool hasMemory) {
  UsageStats u;
  if (hasCpu) {
    u.cpuTimestamp = cpu.timestamp();
    if (cpu.has_usage_core_nano_seconds()) u.cpuCoreNanos = cpu.usage_core_nano_seconds().value();
  }
  if (hasMemory) {
    u.memoryTimestamp = memory.timestamp();
    if (memory.has_working_set_bytes())
      u.memoryWorkingSetBytes = memory.working_set_bytes().value();
  }
  return u;
}

ContainerStats fromContainerStats(const cri::ContainerStats& c) {
  ContainerStats out;
  out.id = c.attributes().id();
  out.name = c.attributes().metadata().name();
  out.attempt = c.attributes().metadata().attempt();
  out.labels = toLabels(c.attributes().labels());
  out.usage = fromUsage(c.cpu(), c.memory(), c.has_cpu(), c.has_memory());
  return out;
}

class CriRuntime final : public Runtime {
 public:
  explicit CriRuntime(const CriConfig& config) : config_(config), channel_(config.endpoint) {}

  // Runtime
  Result<VersionInfo> version() override {
    cri::VersionRequest req;
    req.set_version("v1");
    cri::VersionResponse resp;
    OUTPOST_RETURN_IF_ERROR(invoke(kRuntime, "Version", req, &resp, deadline()));
    return VersionInfo{resp.runtime_name(), resp.runtime_version(), resp.runtime_api_version()};
  }

  Result<std::string> runPodSandbox(const PodSandboxConfig& config,
                                    const std::string& runtimeHandler) override {
    cri::RunPodSandboxRequest req;
    fillSandboxConfig(req.mutable_config(), config);
    req.set_runtime_handler(runtimeHandler);
    cri::RunPodSandboxResponse resp;
    OUTPOST_RETURN_IF_ERROR(invoke(kRuntime, "RunPodSandbox", req, &resp, deadline()));
    return resp.pod_sandbox_id();
  }

  Status stopPodSandbox(const std::string& id) override {
    cri::StopPodSandboxRequest req;
    req.set_pod_sandbox_id(id);
    cri::StopPodSandboxResponse resp;
    return invoke(kRuntime, "StopPodSandbox", req, &resp, deadline());
  }

  Status removePodSandbox(const std::string& id) override {
    cri::RemovePodSandboxRequest req;
    req.set_pod_sandbox_id(id);
    cri::RemovePodSandboxResponse resp;
    return invoke(kRuntime, "RemovePodSandbox", req, &resp, deadline());
  }

  Result<PodSandboxStatus> podSandboxStatus(const std::string& id) override {
    cri::PodSandboxStatusRequest req;
    req.set_pod_sandbox_id(id);
    cri::PodSandboxStatusResponse resp;
    OUTPOST_RETURN_IF_ERROR(invoke(kRuntime, "PodSandboxStatus", req, &resp, deadline()));
    const auto& st = resp.status();
    PodSandboxStatus out;
    out.sandbox.id = st.id();
    out.sandbox.name = st.metadata().name();
    out.sandbox.uid = st.metadata().uid();
    out.sandbox.podNamespace = st.metadata().namespace_();
    out.sandbox.attempt = st.metadata().attempt();
    out.sandbox.state =
        st.state() == cri::SANDBOX_READY ? SandboxState::kReady : SandboxState::kNotReady;
    out.sandbox.createdAt = st.created_at();
    out.sandbox.labels = toLabels(st.labels());
    out.sandbox.annotations = toLabels(st.annotations());
    out.sandbox.runtimeHandler = st.runtime_handler();
    out.ip = st.network().ip();
    out.hostNetwork = st.linux().namespaces().options().network() == cri::NODE;
    return out;
  }

  Result<std::vector<PodSandbox>> listPodSandbox(const SandboxFilter& filter) override {
    cri::ListPodSandboxRequest req;
    auto* f = req.mutable_filter();
    f->set_id(filter.id);
    if (filter.state) {
      f->mutable_state()->set_state(*filter.state == SandboxState::kReady ? cri::SANDBOX_READY
                                                                          : cri::SANDBOX_NOTREADY);
    }
    fillMap(f->mutable_label_selector(), filter.labels);
    cri::ListPodSandboxResponse resp;
    OUTPOST_RETURN_IF_ERROR(invoke(kRuntime, "ListPodSandbox", req, &resp, deadline()));
    std::vector<PodSandbox> out;
    out.reserve(resp.items_size());
    for (const auto& p : resp.items()) out.push_back(fromSandbox(p));
    return out;
  }

  Result<std::string> createContainer(const std::string& podSandboxId,
                                      const ContainerConfig& config,
                                      const PodSandboxConfig& sandboxConfig) override {
    cri::CreateContainerRequest req;
    req.set_pod_sandbox_id(podSandboxId);
    fillSandboxConfig(req.mutable_sandbox_config(), sandboxConfig);
    auto* c = req.mutable_config();
    c->mutable_metadata()->set_name(config.name);
    c->mutable_metadata()->set_attempt(config.attempt);
    c->mutable_image()->set_image(config.image);
    for (const auto& s : config.command) c->add_command(s);
    for (const auto& s : config.args) c->add_args(s);
    c->set_working_dir(config.workingDir);
    for (const auto& [k, v] : config.env) {
      auto* kv = c->add_envs();
      kv->set_key(k);
      kv->set_value(v);
    }
    for (const auto& m : config.mounts) {
      auto* cm = c->add_mounts();
      cm->set_container_path(m.containerPath);
      cm->set_host_path(m.hostPath);
      cm->set_readonly(m.readOnly);
    }
    fillMap(c->mutable_labels(), config.labels);
    fillMap(c->mutable_annotations(), config.annotations);
    c->set_log_path(config.logPath);
    c->set_stdin(config.stdin);
    c->set_stdin_once(config.stdinOnce);
    c->set_tty(config.tty);
    auto* lx = c->mutable_linux();
    auto* res = lx->mutable_resources();
    res->set_cpu_period(config.resources.cpuPeriod);
    res->set_cpu_quota(config.resources.cpuQuota);
    res->set_cpu_shares(config.resources.cpuShares);
    res->set_memory_limit_in_bytes(config.resources.memoryLimitBytes);
    fillSecurity(lx->mutable_security_context(), config.security, config.hostNetwork);
    cri::CreateContainerResponse resp;
    OUTPOST_RETURN_IF_ERROR(invoke(kRuntime, "CreateContainer", req, &resp, deadline()));
    return resp.container_id();
  }

  Status startContainer(const std::string& id) override {
    cri::StartContainerRequest req;
    req.set_container_id(id);
    cri::StartContainerResponse resp;
    return invoke(kRuntime, "StartContainer", req, &resp, deadline());
  }

  Status stopContainer(const std::string& id, std::chrono::seconds grace) override {
    cri::StopContainerRequest req;
    req.set_container_id(id);
    req.set_timeout(grace.count());
    cri::StopContainerResponse resp;
    return invoke(kRuntime, "StopContainer", req, &resp, deadline(grace));
  }

  Status removeContainer(const std::string& id) override {
    cri::RemoveContainerRequest req;
    req.set_container_id(id);
    cri::RemoveContainerResponse resp;
    return invoke(kRuntime, "RemoveContainer", req, &resp, deadline());
  }

  Result<std::vector<Container>> listContainers(const ContainerFilter& filter) override {
    cri::ListContainersRequest req;
    auto* f = req.mutable_filter();
    f->set_id(filter.id);
    f->set_pod_sandbox_id(filter.podSandboxId);
    if (filter.state) f->mutable_state()->set_state(toState(*filter.state));
    fillMap(f->mutable_label_selector(), filter.labels);
    cri::ListContainersResponse resp;
    OUTPOST_RETURN_IF_ERROR(invoke(kRuntime, "ListContainers", req, &resp, deadline()));
    std::vector<Container> out;
    out.reserve(resp.containers_size());
    for (const auto& c : resp.containers()) out.push_back(fromContainer(c));
    return out;
  }

  Result<ContainerStatus> containerStatus(const std::string& id) override {
    cri::ContainerStatusRequest req;
    req.set_container_id(id);
    cri::ContainerStatusResponse resp;
    OUTPOST_RETURN_IF_ERROR(invoke(kRuntime, "ContainerStatus", req, &resp, deadline()));
    const auto& st = resp.status();
    ContainerStatus out;
    out.container.id = st.id();
    out.container.name = st.metadata().name();
    out.container.attempt = st.metadata().attempt();
    out.container.image = st.image().image();
    out.container.imageRef = st.image_ref();
    out.container.state = fromState(st.state());
    out.container.createdAt = st.created_at();
    out.container.labels = toLabels(st.labels());
    out.container.annotations = toLabels(st.annotations());
    out.startedAt = st.started_at();
    out.finishedAt = st.finished_at();
    out.exitCode = st.exit_code();
    out.reason = st.reason();
    out.message = st.message();
    return out;
  }

  Result<ExecResult> execSync(const std::string& id, const std::vector<std::string>& cmd,
                              std::chrono::seconds timeout) override {
    cri::ExecSyncRequest req;
    req.set_container_id(id);
    for (const auto& s : cmd) req.add_cmd(s);
    req.set_timeout(timeout.count());
    cri::ExecSyncResponse resp;
    OUTPOST_RETURN_IF_ERROR(invoke(kRuntime, "ExecSync", req, &resp, deadline(timeout)));
    return ExecResult{resp.stdout(), resp.stderr(), resp.exit_code()};
  }

  Result<std::string> exec(const StreamRequest& request) override {
    cri::ExecRequest req;
    req.set_container_id(request.containerId);
    for (const auto& s : request.cmd) req.add_cmd(s);
    req.set_tty(request.tty);
    req.set_stdin(request.stdin);
    req.set_stdout(request.stdout);
    req.set_stderr(request.stderr);
    cri::ExecResponse resp;
    OUTPOST_RETURN_IF_ERROR(invoke(kRuntime, "Exec", req, &resp, deadline()));
    return resp.url();
  }

  Result<std::string> attach(const StreamRequest& request) override {
    cri::AttachRequest req;
    req.set_container_id(request.containerId);
    req.set_tty(request.tty);
    req.set_stdin(request.stdin);
    req.set_stdout(request.stdout);
    req.set_stderr(request.stderr);
    cri::AttachResponse resp;
    OUTPOST_RETURN_IF_ERROR(invoke(kRuntime, "Attach", req, &resp, deadline()));
    return resp.url();
  }

  Result<std::vector<ContainerStats>> listContainerStats(const StatsFilter& filter) override {
    cri::ListContainerStatsRequest req;
    auto* f = req.mutable_filter();
    f->set_id(filter.id);
    f->set_pod_sandbox_id(filter.podSandboxId);
    fillMap(f->mutable_label_selector(), filter.labels);
    cri::ListContainerStatsResponse resp;
    OUTPOST_RETURN_IF_ERROR(invoke(kRuntime, "ListContainerStats", req, &resp, deadline()));
    std::vector<ContainerStats> out;
    out.reserve(resp.stats_size());
    for (const auto& c : resp.stats()) out.push_back(fromContainerStats(c));
    return out;
  }

  Result<std::vector<PodSandboxStats>> listPodSandboxStats(const StatsFilter& filter) override {
    cri::ListPodSandboxStatsRequest req;
    auto* f = req.mutable_filter();
    f->set_id(filter.id);
    fillMap(f->mutable_label_selector(), filter.labels);
    cri::ListPodSandboxStatsResponse resp;
    OUTPOST_RETURN_IF_ERROR(invoke(kRuntime, "ListPodSandboxStats", req, &resp, deadline()));
    std::vector<PodSandboxStats> out;
    out.reserve(resp.stats_size());
    for (const auto& p : resp.stats()) {
      PodSandboxStats s;
      const auto& a = p.attributes();
      s.id = a.id();
      s.name = a.metadata().name();
      s.uid = a.metadata().uid();
      s.podNamespace = a.metadata().namespace_();
      s.labels = toLabels(a.labels());
      const auto& lx = p.linux();
      s.usage = fromUsage(lx.cpu(), lx.memory(), lx.has_cpu(), lx.has_memory());
      for (const auto& c : lx.containers()) s.containers.push_back(fromContainerStats(c));
      out.push_back(std::move(s));
    }
    return out;
  }

  Result<std::optional<ImageInfo>> imageStatus(const std::string& image) override {
    cri::ImageStatusRequest req;
    req.mutable_image()->set_image(image);
    cri::ImageStatusResponse resp;
    OUTPOST_RETURN_IF_ERROR(invoke(kImage, "ImageStatus", req, &resp, deadline()));
    if (!resp.has_image() || resp.image().id().empty()) return std::optional<ImageInfo>();
    ImageInfo info;
    info.id = resp.image().id();
    info.repoTags.assign(resp.image().repo_tags().begin(), resp.image().repo_tags().end());
    info.size = resp.image().size();
    return std::optional<ImageInfo>(std::move(info));
  }

  Result<std::string> pullImage(const std::string& image) override {
    cri::PullImageRequest req;
    req.mutable_image()->set_image(image);
    cri::PullImageResponse resp;
    OUTPOST_RETURN_IF_ERROR(invoke(kImage, "PullImage", req, &resp,
                                   std::chrono::steady_clock::now() + config_.pullTimeout));
    return resp.image_ref();
  }

 private:
  static Container fromContainer(const cri::Container& c) {
    Container out;
    out.id = c.id();
    out.podSandboxId = c.pod_sandbox_id();
    out.name = c.metadata().name();
    out.attempt = c.metadata().attempt();
    out.image = c.image().image();
    out.imageRef = c.image_ref();
    out.state = fromState(c.state());
    out.createdAt = c.created_at();
    out.labels = toLabels(c.labels());
    out.annotations = toLabels(c.annotations());
    return out;
  }

  static constexpr const char* kRuntime = "/runtime.v1.RuntimeService/";
  static constexpr const char* kImage = "/runtime.v1.ImageService/";

  // The deadline of a call: the configured call timeout plus `extra` (the call's own wait).
  Deadline deadline(std::chrono::seconds extra = {}) const {
    return std::chrono::steady_clock::now() + config_.callTimeout + extra;
  }

  // One unary call; errors read "<Method>: <what the runtime or the transport said>".
  Status invoke(const char* service, const char* method, const google::protobuf::MessageLite& req,
                google::protobuf::MessageLite* resp, Deadline deadline) {
    std::string body;
    if (!req.SerializeToString(&body)) {
      return Status(core::Code::kInternal, std::string(method) + ": cannot encode the request");
    }
    auto answer = channel_.call(std::string(service) + method, body, deadline);
    if (!answer.isOk()) {
      return Status(answer.status().code(), std::string(method) + ": " + answer.status().message());
    }
    if (!resp->ParseFromString(*answer)) {
      return Status(core::Code::kInternal,
                    std::string(method) + ": the runtime's response does not parse");
    }
    return Status::ok();
  }

  CriConfig config_;
  h2::Channel channel_;
};

}  // namespace

Result<RuntimePtr> makeCriRuntime(const CriConfig& config) {
  if (config.endpoint.empty()) return core::invalidArgument("CRI endpoint is empty");
  if (config.endpoint.rfind("unix://", 0) != 0 &&
      config.endpoint.find("://") != std::string::npos) {
    return core::invalidArgument("CRI endpoint must be a unix socket: " + config.endpoint);
  }
  return RuntimePtr(std::make_unique<CriRuntime>(config));
}

}  // namespace outpost::deploy
