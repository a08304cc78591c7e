#include "support/containerd_harness.h"

#include <signal.h>
#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "outpost/deploy/cgroup.h"

namespace outpost::test {
namespace {

namespace fs = std::filesystem;

// Builds one OCI image layout tar: a busybox rootfs (static busybox and its applet links) in one
// layer, with `entrypoint`, named `name` by the io.containerd.image.name annotation.
const char* kBuildImage = R"sh(
set -eu
name=$1; ep=$2; W=$3
rm -rf "$W"; mkdir -p "$W/rootfs/bin" "$W/layout/blobs/sha256"
cp /bin/busybox "$W/rootfs/bin/busybox"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$W/rootfs/bin/$a"; done
mkdir -p "$W/rootfs/tmp" "$W/rootfs/etc" "$W/rootfs/proc" "$W/rootfs/sys" "$W/rootfs/dev"
tar -C "$W/rootfs" --numeric-owner --owner=0 --group=0 --sort=name --mtime=@0 -cf "$W/layer.tar" .
blob() { d=$(sha256sum "$1" | cut -d' ' -f1); s=$(stat -c %s "$1"); mv "$1" "$W/layout/blobs/sha256/$d"; echo "$d $s"; }
set -- $(blob "$W/layer.tar"); L=$1; LS=$2
printf '{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Entrypoint":%s},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' "$ep" "$L" >"$W/config.json"
set -- $(blob "$W/config.json"); C=$1; CS=$2
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' "$C" "$CS" "$L" "$LS" >"$W/manifest.json"
set -- $(blob "$W/manifest.json"); M=$1; MS=$2
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"amd64","os":"linux"},"annotations":{"io.containerd.image.name":"%s"}}]}' "$M" "$MS" "$name" >"$W/layout/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' >"$W/layout/oci-layout"
tar -C "$W/layout" -cf "$W/image.tar" .
rm -rf "$W/rootfs"
)sh";

std::map<int, int> parents() {
  std::map<int, int> out;
  for (const auto& e : fs::directory_iterator("/proc")) {
    std::string name = e.path().filename().string();
    if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
    std::ifstream stat(e.path() / "stat");
    std::string line;
    if (!std::getline(stat, line)) continue;
    auto close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream in(line.substr(close + 2));
    char state;
    int ppid = 0;
    in >> state >> ppid;
    out[std::stoi(name)] = ppid;
  }
  return out;
}

std::string cmdline(int pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/cmdline");
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::replace(s.begin(), s.end(), '\0', ' ');
  return s;
}

}  // namespace

std::unique_ptr<ContainerdHarness> ContainerdHarness::startOrExplain(std::string& why) {
  why = unavailableReason();
  if (!why.empty()) return nullptr;
  try {
    auto h = std::make_unique<ContainerdHarness>();
    h->start();
    return h;
  } catch (const std::exception& e) {
    why = e.what();
    return nullptr;
  }
}

std::string ContainerdHarness::unavailableReason() {
  if (geteuid() != 0) return "needs root";
  for (const char* bin :
       {"/usr/bin/containerd", "/usr/bin/ctr", "/usr/sbin/runc", "/bin/busybox"}) {
    if (!fs::exists(bin)) return std::string("missing ") + bin;
  }
  return "";
}

ContainerdHarness::ContainerdHarness() {
  std::random_device rd;
  cgroupParent_ = "/outpost-test-" + std::to_string(getpid()) + "-" + std::to_string(rd() % 100000);
  fs::create_directories(dir_.path() / "cni");
  fs::create_directories(dir_.path() / "images");
  writeConfig();
}

ContainerdHarness::~ContainerdHarness() {
  try {
    // Kill every container and shim, stop containerd, unmount what it mounted under our dir.
    killAllContainers();
    for (const auto& [pid, ppid] : parents()) {
      (void)ppid;
      if (cmdline(pid).find("-address " + socket()) != std::string::npos) kill(pid, SIGKILL);
    }
    stop();
    std::vector<std::string> mounts;
    std::ifstream m("/proc/self/mounts");
    std::string line;
    while (std::getline(m, line)) {
      std::istringstream in(line);
      std::string dev, point;
      in >> dev >> point;
      if (point.rfind(dir_.path().string(), 0) == 0) mounts.push_back(point);
    }
    std::sort(mounts.rbegin(), mounts.rend());
    for (const auto& p : mounts) ::umount2(p.c_str(), MNT_DETACH);
    deploy::removeCgroup(cgroupParent_);
  } catch (const std::exception&) {
  }
}

void ContainerdHarness::writeConfig() {
  std::string d = dir_.path().string();
  std::string runtime = R"(
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.NAME]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.NAME.options]
        SystemdCgroup = false
)";
  auto handler = [&](const std::string& name) {
    std::string s = runtime;
    for (size_t p; (p = s.find("NAME")) != std::string::npos;) s.replace(p, 4, name);
    return s;
  };
  std::ostringstream c;
  c << "version = 2\n"
    << "root = \"" << d << "/root\"\nstate = \"" << d << "/state\"\n"
    << "disabled_plugins = [\"io.containerd.snapshotter.v1.aufs\", "
       "\"io.containerd.snapshotter.v1.btrfs\", \"io.containerd.snapshotter.v1.zfs\", "
       "\"io.containerd.snapshotter.v1.devmapper\", \"io.containerd.tracing.processor.v1.otlp\", "
       "\"io.containerd.internal.v1.tracing\"]\n"
    << "[grpc]\n  address = \"" << d << "/containerd.sock\"\n"
    << "[ttrpc]\n  address = \"" << d << "/containerd.sock.ttrpc\"\n"
    << "[plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"" << d << "/opt\"\n"
    << "[plugins.\"io.containerd.grpc.v1.cri\"]\n"
    << "  sandbox_image = \"" << kPause << "\"\n"
    << "  restrict_oom_score_adj = true\n"
    << "  [plugins.\"io.containerd.grpc.v1.cri\".containerd]\n"
    << "    snapshotter = \"overlayfs\"\n    default_runtime_name = \"runc\"\n"
    << handler("runc") << handler(kAltHandler) << "  [plugins.\"io.containerd.grpc.v1.cri\".cni]\n"
    << "    bin_dir = \"/usr/lib/cni\"\n    conf_dir = \"" << d << "/cni\"\n";
  writeFile(dir_.path() / "config.toml", c.str());
}

void ContainerdHarness::buildImages() {
  fs::path images = dir_.path() / "images";
  for (auto [name, ep, sub] : {std::tuple<const char*, const char*, const char*>{
                                   kPause, R"(["/bin/sleep","inf"])", "pause"},
                               {kBusybox, R"(["/bin/sh"])", "busybox"}}) {
    std::string err;
    int rc = run({"/bin/sh", "-c", kBuildImage, "build", name, ep, (images / sub).string()},
                 nullptr, &err);
    if (rc != 0) throw std::runtime_error("building image " + std::string(name) + ": " + err);
  }
}

void ContainerdHarness::start() {
  if (running()) return;
  containerd_ = std::make_unique<Child>(std::vector<std::string>{
      "/usr/bin/containerd", "--config", (dir_.path() / "config.toml").string()});
  bool up = waitFor(
      [&] {
        if (!containerd_->running()) return true;
        return run({"/usr/bin/ctr", "-a", socket(), "version"}, nullptr, nullptr,
                   std::chrono::seconds(5)) == 0;
      },
      std::chrono::seconds(20));
  if (!up || !containerd_->running()) {
    std::string log = containerd_->err();
    containerd_.reset();
    throw std::runtime_error("containerd did not start: " +
                             log.substr(log.size() > 2000 ? log.size() - 2000 : 0));
  }
  if (!imported_) {
    buildImages();
    for (const char* sub : {"pause", "busybox"}) {
      std::string out;
      if (ctr({"images", "import", (dir_.path() / "images" / sub / "image.tar").string()}, &out) !=
          0)
        throw std::runtime_error(std::string("importing ") + sub + ": " + out);
    }
    imported_ = true;
  }
}

void ContainerdHarness::stop() {
  if (!containerd_) return;
  containerd_->signal(SIGTERM);
  if (containerd_->wait(std::chrono::seconds(10)) == -1) {
    containerd_->signal(SIGKILL);
    containerd_->wait(std::chrono::seconds(10));
  }
  containerd_.reset();
}

void ContainerdHarness::restart() {
  stop();
  start();
}

bool ContainerdHarness::running() const { return containerd_ && containerd_->running(); }

void ContainerdHarness::killAllContainers() {
  auto tree = parents();
  std::set<int> shims;
  for (const auto& [pid, ppid] : tree) {
    (void)ppid;
    std::string cmd = cmdline(pid);
    if (cmd.find("containerd-shim") != std::string::npos &&
        cmd.find("-address " + socket()) != std::string::npos) {
      shims.insert(pid);
    }
  }
  // Every descendant of our shims.
  std::set<int> victims;
  bool grew = true;
  while (grew) {
    grew = false;
    for (const auto& [pid, ppid] : tree) {
      if ((shims.count(ppid) || victims.count(ppid)) && victims.insert(pid).second) grew = true;
    }
  }
  for (int pid : victims) kill(pid, SIGKILL);
}

int ContainerdHarness::ctr(const std::vector<std::string>& args, std::string* out) {
  std::vector<std::string> argv = {"/usr/bin/ctr", "-a", socket(), "-n", "k8s.io"};
  argv.insert(argv.end(), args.begin(), args.end());
  std::string err;
  int rc = run(argv, out, &err);
  if (out && rc != 0) *out += err;
  return rc;
}

}  // namespace outpost::test
