"""Checks one KIM mail, as the MTA delivered it, against gematik's KIM S/MIME profile
with an independent ASN.1 parser (asn1crypto) and the openssl command line.

usage: kim_profile_check.py MAIL RECIP_CERT_KEY_PEM CA_PEM EXPECTED_RECIPIENT_COUNT

Prints a JSON report; exits 1 listing every violation found.
"""
import base64
import email.parser
import email.policy
import hashlib
import json
import re
import subprocess
import sys
import tempfile

from asn1crypto import algos, cms, core, tsp, x509

mail_path, recip_pem, ca_pem, expected_ris = sys.argv[1:5]
expected_ris = int(expected_ris)
violations = []
report = {}


def check(cond, what):
    if not cond:
        violations.append(what)
    return cond


# --- the attributes asn1crypto does not know -------------------------------------
class RecipientEmail(core.Sequence):
    _fields = [("email_address", core.IA5String), ("rid", cms.IssuerAndSerialNumber)]


class RecipientEmails(core.SetOf):
    _child_spec = RecipientEmail


class CMSAlgorithmProtection(core.Sequence):
    _fields = [
        ("digest_algorithm", algos.DigestAlgorithm),
        ("signature_algorithm", algos.SignedDigestAlgorithm, {"implicit": 1, "optional": True}),
        ("mac_algorithm", algos.HmacAlgorithm, {"implicit": 2, "optional": True}),
    ]


class GCMParameters(core.Sequence):
    # RFC 5084; written explicitly, so a default ICV length would show as 12
    _fields = [("aes_nonce", core.OctetString), ("aes_icvlen", core.Integer, {"default": 12})]


class SetOfRecipientEmails(core.SetOf):
    _child_spec = RecipientEmail


class SetOfAlgProtection(core.SetOf):
    _child_spec = CMSAlgorithmProtection


class SetOfSigningCertificateV2(core.SetOf):
    _child_spec = tsp.SigningCertificateV2


RECIPIENT_EMAILS = "1.2.276.0.76.4.173"
ALG_PROTECTION = "1.2.840.113549.1.9.52"
SIGNING_CERT_V2 = "1.2.840.113549.1.9.16.2.47"
cms.CMSAttributeType._map[RECIPIENT_EMAILS] = "recipient_emails"
cms.CMSAttributeType._map[ALG_PROTECTION] = "cms_algorithm_protection_kim"
cms.CMSAttributeType._map[SIGNING_CERT_V2] = "signing_certificate_v2_kim"
cms.CMSAttributeType._reverse_map = None
cms.CMSAttribute._oid_specs["recipient_emails"] = SetOfRecipientEmails
cms.CMSAttribute._oid_specs["cms_algorithm_protection_kim"] = SetOfAlgProtection
cms.CMSAttribute._oid_specs["signing_certificate_v2_kim"] = SetOfSigningCertificateV2


def attr_map(attrs):
    return {a["type"].dotted: a for a in attrs}


def pss_ok(params, where):
    check(params["hash_algorithm"]["algorithm"].native == "sha256", where + ": PSS hash is not SHA-256")
    mgf = params["mask_gen_algorithm"]
    check(mgf["algorithm"].native == "mgf1", where + ": PSS MGF is not MGF1")
    check(mgf["parameters"]["algorithm"].native == "sha256", where + ": PSS MGF1 hash is not SHA-256")
    check(params["salt_length"].native == 32, where + ": PSS salt length is not 32")


# --- the outer mail ----------------------------------------------------------------
raw = open(mail_path, "rb").read()
head_end = raw.find(b"\r\n\r\n")
check(head_end > 0, "the mail has no CRLF header end")
msg = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(raw)
check(msg["Subject"] == "KOM-LE-Nachricht", "outer Subject is not KOM-LE-Nachricht")
check(msg["X-KOM-LE-Version"] == "1.0", "X-KOM-LE-Version is not 1.0")
check(msg["X-KIM-Dienstkennung"] is not None, "no X-KIM-Dienstkennung in the outer header")
cm = msg["X-KIM-CMVersion"] or ""
check(re.fullmatch(r"[a-zA-Z0-9_]{1,5}_[0-9]{1,2}\.[0-9]{1,2}\.[0-9]{1,2}(-25[0-5]|-2[0-4][0-9]|-[0-1]?[0-9]?[0-9])?", cm),
      "X-KIM-CMVersion does not match A_21388-01: %r" % cm)
pt = msg["X-KIM-PTVersion"] or ""
check(re.fullmatch(r"[0-9]{1,2}\.[0-9]{1,2}\.[0-9]{1,2}(-25[0-5]|-2[0-4][0-9]|-[0-1]?[0-9]?[0-9])?", pt),
      "X-KIM-PTVersion does not match A_21388-01: %r" % pt)
import email.utils
check(msg["Expires"] is not None and email.utils.parsedate_to_datetime(msg["Expires"]) is not None,
      "no RFC 5322 Expires")
ct = re.sub(r"\s+", " ", msg["Content-Type"] or "")
check(ct == "application/pkcs7-mime; smime-type=authenticated-enveloped-data; name=smime.p7m",
      "outer Content-Type is %r" % ct)
check((msg["Content-Transfer-Encoding"] or "").lower() == "base64", "outer body is not base64")
check(msg["Bcc"] is None, "the outer header shows Bcc")
body = raw[head_end + 4:]
lines = [l for l in body.split(b"\r\n") if l]
check(all(len(l) <= 76 for l in lines), "a base64 line is longer than 76 characters")
check(all(len(l) == 76 for l in lines[:-1]), "base64 lines before the last are not 76 characters")
der = base64.b64decode(b"".join(lines), validate=True)
report["outer"] = {"cm_version": cm, "pt_version": pt, "base64_lines": len(lines), "der_bytes": len(der)}

def structures():
    global unprot
    # --- AuthEnvelopedData -----------------------------------------------------------
    ci = cms.ContentInfo.load(der, strict=True)
    check(ci["content_type"].dotted == "1.2.840.113549.1.9.16.1.23", "not id-ct-authEnvelopedData")
    aed = ci["content"]
    check(aed["version"].native == "v0", "AuthEnvelopedData version is not 0")
    check(not aed["originator_info"].native, "originatorInfo present (KOM-LE-A_2106)")
    ris = aed["recipient_infos"]
    check(len(ris) == expected_ris, "%d RecipientInfos, expected %d" % (len(ris), expected_ris))
    rids = []
    for ri in ris:
        check(ri.name == "ktri", "a RecipientInfo is not KeyTransRecipientInfo")
        k = ri.chosen
        check(k["version"].native == "v0", "ktri version is not 0")
        check(k["rid"].name == "issuer_and_serial_number", "rid is not IssuerAndSerialNumber")
        rids.append(k["rid"].chosen)
        alg = k["key_encryption_algorithm"]
        check(alg["algorithm"].dotted == "1.2.840.113549.1.1.7", "key encryption is not RSAES-OAEP")
        p = alg["parameters"]
        check(p["hash_algorithm"]["algorithm"].native == "sha256", "OAEP hash is not SHA-256")
        check(p["mask_gen_algorithm"]["algorithm"].native == "mgf1", "OAEP MGF is not MGF1")
        check(p["mask_gen_algorithm"]["parameters"]["algorithm"].native == "sha256", "OAEP MGF1 hash is not SHA-256")
        check(p["p_source_algorithm"]["parameters"].native in (None, b""), "OAEP label present")
    eci = aed["auth_encrypted_content_info"]
    check(eci["content_type"].native == "data", "encrypted content type is not id-data")
    calg = eci["content_encryption_algorithm"]
    check(calg["algorithm"].dotted == "2.16.840.1.101.3.4.1.46", "content encryption is not AES-256-GCM")
    gcm = GCMParameters.load(calg["parameters"].dump())
    nonce = gcm["aes_nonce"].native
    icv = gcm["aes_icvlen"].native
    check(len(nonce) == 12, "GCM nonce is %d bytes, not 12" % len(nonce))
    check(icv == 16, "GCM ICV length is %r, not 16" % icv)
    check(len(aed["mac"].native) == 16, "mac is not 16 bytes")
    check(not aed["auth_attrs"].native, "authAttrs present")
    unauth = aed["unauth_attrs"]
    check(len(unauth) == 1 and unauth[0]["type"].dotted == RECIPIENT_EMAILS,
          "unauthAttrs are not exactly recipient-emails")
    unprot = unauth[0]
    # attrValues is the SET OF RecipientEmail itself (as in gematik's sample)
    entries = list(unprot["values"])
    report["recipient_emails"] = sorted(e["email_address"].native for e in entries)
    check(len(entries) == expected_ris, "recipient-emails has %d entries, expected %d" % (len(entries), expected_ris))
    for e in entries:
        check(any(e["rid"].dump() == r.dump() for r in rids), "a recipient-emails entry names no RecipientInfo")

    # --- decrypt with the CLI (OpenSSL 3.0 cannot parse unauthAttrs: re-encode without) --
    plain_aed = cms.AuthEnvelopedData({
        "version": aed["version"],
        "recipient_infos": aed["recipient_infos"],
        "auth_encrypted_content_info": aed["auth_encrypted_content_info"],
        "mac": aed["mac"],
    })
    stripped = cms.ContentInfo({"content_type": "authenticated_enveloped_data", "content": plain_aed}).dump()
    with tempfile.NamedTemporaryFile(suffix=".der") as f:
        f.write(stripped)
        f.flush()
        r = subprocess.run(["openssl", "cms", "-decrypt", "-binary", "-inform", "DER", "-in", f.name,
                            "-recip", recip_pem, "-inkey", recip_pem], capture_output=True)
    check(r.returncode == 0, "openssl cms -decrypt failed: %s" % r.stderr.decode(errors="replace"))
    wrapped = r.stdout
    prefix = (b"MIME-Version: 1.0\r\nContent-Type: application/pkcs7-mime; smime-type=signed-data; "
              b"name=smime.p7m\r\nContent-Transfer-Encoding: binary\r\n")
    check(wrapped.startswith(prefix), "the decrypted entity is not the binary signed-data wrap")
    signed_der = wrapped[wrapped.find(b"\r\n\r\n") + 4:]

    # --- SignedData --------------------------------------------------------------------
    sci = cms.ContentInfo.load(signed_der, strict=True)
    check(sci["content_type"].native == "signed_data", "inner content is not SignedData")
    sd = sci["content"]
    check(sd["version"].native == "v1", "SignedData version is not 1")
    check([a["algorithm"].native for a in sd["digest_algorithms"]] == ["sha256"], "digestAlgorithms are not {sha256}")
    eci = sd["encap_content_info"]
    check(eci["content_type"].native == "data", "eContentType is not id-data")
    econtent = eci["content"].native
    check(econtent.startswith(b"Content-Type: message/rfc822\r\n\r\n"), "eContent is not the rfc822 wrap")
    certs = sd["certificates"]
    check(len(certs) == 1, "%d certificates, expected only the signer's" % len(certs))
    check(not sd["crls"].native, "CRLs present")
    check(len(sd["signer_infos"]) == 1, "not exactly one SignerInfo")
    si = sd["signer_infos"][0]
    signer = certs[0].chosen
    check(si["version"].native == "v1", "SignerInfo version is not 1")
    check(si["sid"].name == "issuer_and_serial_number", "sid is not IssuerAndSerialNumber")
    check(si["sid"].chosen["serial_number"].native == signer.serial_number
          and si["sid"].chosen["issuer"].dump() == signer.issuer.dump(), "sid does not name the certificate")
    check(si["digest_algorithm"]["algorithm"].native == "sha256", "SignerInfo digest is not SHA-256")
    salg = si["signature_algorithm"]
    check(salg["algorithm"].dotted == "1.2.840.113549.1.1.10", "signature is not RSASSA-PSS")
    pss_ok(salg["parameters"], "signatureAlgorithm")
    check(not si["unsigned_attrs"].native, "unsigned attributes present")
    attrs = attr_map(si["signed_attrs"])
    want = {"1.2.840.113549.1.9.3", "1.2.840.113549.1.9.5", "1.2.840.113549.1.9.4",
            ALG_PROTECTION, SIGNING_CERT_V2, RECIPIENT_EMAILS}
    check(set(attrs) == want, "signed attributes are %s" % sorted(attrs))
    report["signed_attributes"] = sorted(attrs)
    if set(attrs) == want:
        check(attrs["1.2.840.113549.1.9.3"]["values"][0].native == "data", "contentType attribute is not id-data")
        check(attrs["1.2.840.113549.1.9.4"]["values"][0].native == hashlib.sha256(econtent).digest(),
              "messageDigest is not SHA-256 of eContent")
        prot = attrs[ALG_PROTECTION]["values"][0]
        check(prot["digest_algorithm"]["algorithm"].native == "sha256", "CMSAlgorithmProtection digest is not SHA-256")
        check(prot["signature_algorithm"]["algorithm"].dotted == "1.2.840.113549.1.1.10",
              "CMSAlgorithmProtection signature is not RSASSA-PSS")
        pss_ok(prot["signature_algorithm"]["parameters"], "CMSAlgorithmProtection")
        scv2 = attrs[SIGNING_CERT_V2]["values"][0]
        cid = scv2["certs"][0]
        check(cid["hash_algorithm"]["algorithm"].native == "sha256", "ESSCertIDv2 hash is not SHA-256")
        check(cid["cert_hash"].native == hashlib.sha256(certs[0].chosen.dump()).digest(),
              "ESSCertIDv2 certHash is not SHA-256 of the signer certificate")
        check(attrs[RECIPIENT_EMAILS].dump() == unprot.dump(),
              "signed and unprotected recipient-emails differ (KOM-LE-A_2116)")

    with tempfile.NamedTemporaryFile(suffix=".der") as f:
        f.write(signed_der)
        f.flush()
        r = subprocess.run(["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", f.name,
                            "-CAfile", ca_pem, "-purpose", "any"], capture_output=True)
    check(r.returncode == 0, "openssl cms -verify failed: %s" % r.stderr.decode(errors="replace"))
    check(r.stdout == econtent, "openssl cms -verify returned other content")



try:
    structures()
except Exception as e:  # a structure that does not parse is a violation, not a crash
    violations.append("cannot parse: %s: %s" % (type(e).__name__, e))

report["violations"] = violations
print(json.dumps(report, indent=1))
sys.exit(1 if violations else 0)
