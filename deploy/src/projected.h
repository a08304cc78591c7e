#pragma once
// Projected and downwardAPI volumes: parsing their sources from the Pod JSON, and the files they
// hold (configMap and secret keys, downwardAPI fields, the service-account token), each checked
// before anything is written. The token itself comes from ServiceAccountTokens (sa_tokens.h).

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "outpost/core/status.h"
#include "outpost/deploy/ports.h"
#include "pod_spec.h"

namespace outpost::deploy {

// `src` is spec.volumes[i].projected (at `path`): fills out.sources and out.defaultMode. Fields not
// acted on go to `unsupported` (their JSON paths). INVALID_ARGUMENT naming the field for a path
// that is not relative or climbs, a mode outside 0..0777, an unknown source, an expirationSeconds
// outside 600..2^32 (as the API server's validation), an audience that is not printable.
core::Status parseProjected(const nlohmann::json& src, const std::string& path, VolumeSpec& out,
                            std::vector<std::string>& unsupported);
// `src` is spec.volumes[i].downwardAPI: one downwardAPI source.
core::Status parseDownwardApiVolume(const nlohmann::json& src, const std::string& path,
                                    VolumeSpec& out, std::vector<std::string>& unsupported);

// One file of a projected volume, relative to the volume's directory.
struct ProjectedFile {
  std::string path;
  std::string content;
  int mode = 0644;
};

// The service-account token for a source of `pod`'s volume `volume`: the token, or why there is
// none yet (UNAVAILABLE).
using TokenFor = std::function<core::Result<std::string>(
    const PodSpec& pod, const std::string& volume, const ProjectionSource& source)>;

// The files of the projected or downwardAPI volume `v` of `pod`. NOT_FOUND for an absent
// configMap or secret (or key) that is not optional; INVALID_ARGUMENT for a key that cannot be a
// file name, an unsupported downwardAPI fieldPath or resource, a path projected twice; the
// token's error when `tokenFor` has none.
core::Result<std::vector<ProjectedFile>> projectedFiles(const PodSpec& pod, const VolumeSpec& v,
                                                        DesiredPods& desired,
                                                        const TokenFor& tokenFor);

// The value of a downwardAPI fieldRef: metadata.name, .namespace, .uid, .labels, .annotations,
// metadata.labels['k'], metadata.annotations['k']. INVALID_ARGUMENT for any other field.
core::Result<std::string> downwardField(const PodSpec& pod, const std::string& fieldPath);

}  // namespace outpost::deploy
