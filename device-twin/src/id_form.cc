// A change of device.device_id_form keeps what the twins hold: a device stored as
// "<namespace>/<name>" becomes "<name>" (and back), with its record and every twin property, in
// one transaction, before the Device objects are reconciled; otherwise reconciling would bind a
// new, empty device and unbind the stored one with its values.
#include "service.h"

namespace outpost::twin {

void TwinServiceImpl::rekeyToForm() {
  bool namespaced = opts_.deviceIdForm == DeviceIdForm::kNamespaced;
  std::vector<std::pair<std::string, std::string>> moves;
  std::set<std::string> taken;
  for (const auto& [id, e] : devices_) {
    if ((id.find('/') != std::string::npos) == namespaced) continue;
    std::string to;
    if (namespaced) {
      // The namespace is the Device object's; a device stored without one cannot be placed.
      auto obj = parseDeviceObject(e.record.object);
      if (!obj.isOk() || obj->ns.empty()) {
        log_.warn("device ", validation::printable(id),
                  " keeps its id: the Device object it came from names no namespace");
        continue;
      }
      to = obj->ns + "/" + id;
    } else {
      to = id.substr(id.find('/') + 1);
    }
    if (devices_.count(to) || !taken.insert(to).second) {
      log_.warn("device ", validation::printable(id), " is not moved to ",
                validation::printable(to), ": a device of that id is stored already");
      continue;
    }
    moves.emplace_back(id, to);
  }
  for (const auto& [from, to] : moves) {
    auto node = devices_.extract(from);
    node.key() = to;
    DeviceEntry& e = node.mapped();
    e.record.id = to;
    metadb::DeviceUpdate removed;
    removed.deviceId = from;
    removed.remove = true;
    metadb::DeviceUpdate added;
    added.deviceId = to;
    added.device = e.record;
    for (const auto& [name, p] : e.twin) added.set.push_back(p);
    metadb::WriteBatch batch;
    batch.updateDevice(std::move(removed)).updateDevice(std::move(added));
    // The cloud hears the twin under the id it reads now.
    batch.enqueue(edgeUpdatedItem(to, e));
    log_.info("device ", validation::printable(from), " is now ", validation::printable(to),
              " (device.device_id_form): its twin of ", e.twin.size(), " properties kept");
    devices_.insert(std::move(node));
    commit(to, std::move(batch), {});
  }
}

}  // namespace outpost::twin
