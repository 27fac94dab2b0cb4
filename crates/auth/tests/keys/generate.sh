#!/usr/bin/env bash
# Regenerates the fixed test signing keys and their public JWKs.
# These keys are for tests only and are published in this repository: never trust them anywhere.
# Requires openssl and python3 with the `cryptography` package.
set -euo pipefail
cd "$(dirname "$0")"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa-a.pem
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa-b.pem
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ec-p256.pem
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out ec-p384.pem
openssl genpkey -algorithm ED25519 -out ed25519.pem
for k in rsa-a rsa-b ec-p256 ec-p384 ed25519; do
  openssl pkey -in "$k.pem" -pubout -out "$k.pub.pem"
done
python3 - <<'PY'
import base64, json
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa, ec, ed25519

def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

def be(n, length=None):
    length = length or (n.bit_length() + 7) // 8
    return n.to_bytes(length, "big")

for name in ["rsa-a", "rsa-b", "ec-p256", "ec-p384", "ed25519"]:
    with open(f"{name}.pem", "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    pub = key.public_key()
    if isinstance(pub, rsa.RSAPublicKey):
        nums = pub.public_numbers()
        jwk = {"kty": "RSA", "n": b64(be(nums.n)), "e": b64(be(nums.e))}
    elif isinstance(pub, ec.EllipticCurvePublicKey):
        nums = pub.public_numbers()
        size = (pub.curve.key_size + 7) // 8
        crv = {"secp256r1": "P-256", "secp384r1": "P-384"}[pub.curve.name]
        jwk = {"kty": "EC", "crv": crv, "x": b64(be(nums.x, size)), "y": b64(be(nums.y, size))}
    else:
        raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64(raw)}
    with open(f"{name}.jwk.json", "w") as f:
        json.dump(jwk, f, indent=2, sort_keys=True)
        f.write("\n")
PY
