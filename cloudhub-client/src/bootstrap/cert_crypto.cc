#include "bootstrap/cert_crypto.h"

#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <ctime>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>

#include "outpost/cloudhub/certificates.h"

// OpenSSL's BIO and stack macros are C casts.
#pragma GCC diagnostic ignored "-Wold-style-cast"

namespace outpost::cloudhub::crypto {

namespace {

template <typename T, void (*F)(T*)>
struct Deleter {
  void operator()(T* p) const { F(p); }
};
using BioPtr = std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>>;
using X509Ptr = std::unique_ptr<X509, Deleter<X509, X509_free>>;
using KeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using ReqPtr = std::unique_ptr<X509_REQ, Deleter<X509_REQ, X509_REQ_free>>;
using StorePtr = std::unique_ptr<X509_STORE, Deleter<X509_STORE, X509_STORE_free>>;
using StoreCtxPtr = std::unique_ptr<X509_STORE_CTX, Deleter<X509_STORE_CTX, X509_STORE_CTX_free>>;

BioPtr memBio(const std::string& s) {
  return BioPtr(BIO_new_mem_buf(s.data(), static_cast<int>(s.size())));
}

std::string bioString(BIO* bio) {
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(n));
}

X509Ptr readPem(const std::string& pem) {
  auto bio = memBio(pem);
  return X509Ptr(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
}

std::string nameEntry(X509_NAME* name, int nid) {
  int i = X509_NAME_get_index_by_NID(name, nid, -1);
  if (i < 0) return "";
  ASN1_STRING* s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
  unsigned char* utf8 = nullptr;
  int n = ASN1_STRING_to_UTF8(&utf8, s);
  if (n < 0) return "";
  std::string out(reinterpret_cast<char*>(utf8), static_cast<size_t>(n));
  OPENSSL_free(utf8);
  return out;
}

std::optional<core::WallTime> asn1Time(const ASN1_TIME* t) {
  std::tm tm{};
  if (ASN1_TIME_to_tm(t, &tm) != 1) return std::nullopt;
  return std::chrono::system_clock::from_time_t(timegm(&tm));
}

core::Result<CertInfo> info(X509* cert) {
  CertInfo out;
  X509_NAME* subject = X509_get_subject_name(cert);
  out.commonName = nameEntry(subject, NID_commonName);
  out.organization = nameEntry(subject, NID_organizationName);
  BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr);
  if (bn) {
    char* hex = BN_bn2hex(bn);
    out.serial = hex ? hex : "";
    OPENSSL_free(hex);
    BN_free(bn);
  }
  auto nb = asn1Time(X509_get0_notBefore(cert));
  auto na = asn1Time(X509_get0_notAfter(cert));
  if (!nb || !na) return core::invalidArgument("certificate has unreadable validity times");
  out.notBefore = *nb;
  out.notAfter = *na;
  if (out.notAfter <= out.notBefore)
    return core::invalidArgument("certificate's notAfter is not after its notBefore");
  return out;
}

}  // namespace

std::string opensslError() {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

std::string sha256Hex(const std::string& bytes) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), md);
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned char c : md) {
    out += kHex[c >> 4];
    out += kHex[c & 15];
  }
  return out;
}

core::Result<CertInfo> parseCertPem(const std::string& pem) {
  auto cert = readPem(pem);
  if (!cert) return core::invalidArgument("not a PEM certificate: " + opensslError());
  return info(cert.get());
}

core::Result<CertInfo> parseCertDer(const std::string& der) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  X509Ptr cert(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (!cert) return core::invalidArgument("not a DER certificate: " + opensslError());
  return info(cert.get());
}

core::Result<std::string> certDerToPem(const std::string& der) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  X509Ptr cert(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (!cert) return core::invalidArgument("not a DER certificate: " + opensslError());
  BioPtr out(BIO_new(BIO_s_mem()));
  if (PEM_write_bio_X509(out.get(), cert.get()) != 1)
    return core::internalError("writing PEM: " + opensslError());
  return bioString(out.get());
}

core::Result<KeyAndCsr> makeKeyAndCsr(const std::string& cn, const std::string& o) {
  KeyPtr key(EVP_EC_gen("P-256"));
  if (!key) return core::internalError("making an ECDSA P-256 key: " + opensslError());
  ReqPtr req(X509_REQ_new());
  X509_NAME* name = X509_REQ_get_subject_name(req.get());
  auto add = [&](const char* field, const std::string& value) {
    return X509_NAME_add_entry_by_txt(name, field, MBSTRING_UTF8,
                                      reinterpret_cast<const unsigned char*>(value.c_str()), -1, -1,
                                      0) == 1;
  };
  if (X509_REQ_set_version(req.get(), 0) != 1 || !add("O", o) || !add("CN", cn) ||
      X509_REQ_set_pubkey(req.get(), key.get()) != 1 ||
      X509_REQ_sign(req.get(), key.get(), EVP_sha256()) <= 0) {
    return core::internalError("making the certificate request: " + opensslError());
  }
  KeyAndCsr out;
  BioPtr keyBio(BIO_new(BIO_s_mem()));
  BioPtr csrBio(BIO_new(BIO_s_mem()));
  if (PEM_write_bio_PrivateKey(keyBio.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) !=
          1 ||
      i2d_X509_REQ_bio(csrBio.get(), req.get()) != 1) {
    return core::internalError("writing key or request: " + opensslError());
  }
  out.keyPem = bioString(keyBio.get());
  out.csrDer = bioString(csrBio.get());
  return out;
}

core::Status checkKeyMatches(const std::string& certPem, const std::string& keyPem) {
  auto cert = readPem(certPem);
  if (!cert) return core::invalidArgument("not a PEM certificate: " + opensslError());
  auto bio = memBio(keyPem);
  KeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!key) return core::invalidArgument("not a PEM private key: " + opensslError());
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    ERR_clear_error();
    return core::invalidArgument("the certificate does not belong to the key");
  }
  return core::okStatus();
}

core::Status checkIssuedBy(const std::string& certPem, const std::string& caPem) {
  auto cert = readPem(certPem);
  if (!cert) return core::invalidArgument("not a PEM certificate: " + opensslError());
  auto ca = readPem(caPem);
  if (!ca) return core::invalidArgument("not a PEM CA certificate: " + opensslError());
  StorePtr store(X509_STORE_new());
  X509_STORE_add_cert(store.get(), ca.get());
  X509_STORE_set_flags(store.get(), X509_V_FLAG_NO_CHECK_TIME);
  StoreCtxPtr ctx(X509_STORE_CTX_new());
  if (X509_STORE_CTX_init(ctx.get(), store.get(), cert.get(), nullptr) != 1)
    return core::internalError("X509_STORE_CTX_init: " + opensslError());
  if (X509_verify_cert(ctx.get()) != 1) {
    ERR_clear_error();
    return core::invalidArgument(
        std::string("not signed by the CA: ") +
        X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx.get())));
  }
  return core::okStatus();
}

std::optional<std::string> readWhole(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return std::nullopt;
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string isoTime(core::WallTime t) { return core::formatRfc3339(t); }

}  // namespace outpost::cloudhub::crypto

namespace outpost::cloudhub {

// Here rather than in certificates.cc so that the configuration check (and its fuzzer) needs only
// this file and OpenSSL.
core::Status checkCertificateTimes(const std::string& certFile, core::WallTime now) {
  auto pem = crypto::readWhole(certFile);
  if (!pem) return core::notFound("certificate " + certFile + " cannot be read");
  auto info = crypto::parseCertPem(*pem);
  if (!info.isOk())
    return core::invalidArgument("certificate " + certFile +
                                 " is unreadable: " + info.status().message());
  if (now >= info->notAfter)
    return core::failedPrecondition("certificate " + certFile + " expired on " +
                                    crypto::isoTime(info->notAfter) + " (now " +
                                    crypto::isoTime(now) + ")");
  if (now < info->notBefore)
    return core::failedPrecondition("certificate " + certFile + " is not valid before " +
                                    crypto::isoTime(info->notBefore) + " (now " +
                                    crypto::isoTime(now) + "; is the clock right?)");
  return core::okStatus();
}

}  // namespace outpost::cloudhub
