"""`make oci` (scripts/build-oci.sh): the OCI image layout of the module, read back
the way a registry client reads it (skopeo, from the Debian package scripts/setup.sh
installs), checked against what Istio's WasmPlugin image fetcher accepts (istio/istio
pkg/wasm/imagefetcher.go, the "compat" variant): a manifest that is not Docker
schema 2, one layer of media type application/vnd.oci.image.layer.v1.tar+gzip, a
gzip tar in it holding `plugin.wasm`, the very bytes of the built module. Also the
Istio example (envoy/istio-wasmplugin.yaml): its sha256 pin and its TLS route to the
identity provider."""
import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile

import pytest
import yaml

from harness import REPO_ROOT

BUILD_OCI = os.path.join(REPO_ROOT, "scripts", "build-oci.sh")
ISTIO_EXAMPLE = os.path.join(REPO_ROOT, "envoy", "istio-wasmplugin.yaml")
TAG = "test"

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_TGZ = "application/vnd.oci.image.layer.v1.tar+gzip"
# Istio's CRD validation of WasmPlugin.spec.sha256 (istio/api extensions/v1alpha1/wasm.proto)
ISTIO_SHA256 = re.compile(r"^[a-f0-9]{64}$")


def _sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _skopeo():
    tool = shutil.which("skopeo")
    assert tool, "skopeo is missing: run scripts/setup.sh (make setup)"
    return tool


def _build(wasm, out, tag=TAG):
    p = subprocess.run([BUILD_OCI, wasm, str(out), tag], cwd=REPO_ROOT, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    printed = {}
    for line in p.stdout.splitlines():
        m = re.match(r"build-oci: (module sha256|manifest digest|WasmPlugin sha256): (\S+)", line)
        if m:
            printed[m.group(1)] = m.group(2)
    assert set(printed) == {"module sha256", "manifest digest", "WasmPlugin sha256"}, p.stdout
    return printed


@pytest.fixture(scope="module")
def image(wasm_module, tmp_path_factory):
    """The layout built from the module under test, and what the build printed."""
    out = tmp_path_factory.mktemp("oci") / "layout"
    return {"layout": out, "printed": _build(wasm_module, out)}


@pytest.fixture(scope="module")
def pulled(image, tmp_path_factory):
    """`skopeo copy oci:<layout>:<tag> dir:<d>`: manifest.json and each blob (named by its
    digest, checked by skopeo while copying) as a registry client receives them."""
    d = tmp_path_factory.mktemp("pulled") / "image"
    p = subprocess.run([_skopeo(), "copy", f"oci:{image['layout']}:{TAG}", f"dir:{d}"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    with open(d / "manifest.json", "rb") as f:
        raw = f.read()
    return {"dir": d, "raw": raw, "manifest": json.loads(raw)}


def test_layout_is_an_oci_image_layout(image):
    layout = image["layout"]
    with open(layout / "oci-layout") as f:
        assert json.load(f)["imageLayoutVersion"] == "1.0.0"
    with open(layout / "index.json") as f:
        index = json.load(f)
    # one image, tagged, and nothing in blobs/ that the image does not use
    assert [m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]] == [TAG]
    assert index["manifests"][0]["mediaType"] == OCI_MANIFEST
    assert len(os.listdir(layout / "blobs" / "sha256")) == 3  # manifest, config, layer


def test_manifest_is_istio_compat_variant(pulled):
    m = pulled["manifest"]
    assert m["schemaVersion"] == 2
    # Istio reads a Docker schema 2 manifest as a Docker image, anything else as OCI;
    # umoci leaves the (optional) field out, and index.json says OCI
    assert m.get("mediaType", OCI_MANIFEST) == OCI_MANIFEST
    assert m["config"]["mediaType"] == OCI_CONFIG
    assert len(m["layers"]) == 1, m["layers"]
    assert m["layers"][0]["mediaType"] == OCI_LAYER_TGZ
    assert m["annotations"]["module.wasm.image/variant"] == "compat"


def test_layer_holds_exactly_the_built_module(pulled, wasm_module):
    layer = pulled["manifest"]["layers"][0]
    blob = pulled["dir"] / layer["digest"].split(":", 1)[1]
    assert os.path.getsize(blob) == layer["size"]
    assert "sha256:" + _sha256(blob) == layer["digest"]
    with tarfile.open(blob, mode="r:gz") as tar:
        members = tar.getmembers()
        assert [(t.name, t.isreg()) for t in members] == [("plugin.wasm", True)]
        data = tar.extractfile(members[0]).read()
    assert data[:4] == b"\0asm"
    assert hashlib.sha256(data).hexdigest() == _sha256(wasm_module)


def test_config_names_the_wasm_platform(pulled):
    digest = pulled["manifest"]["config"]["digest"]
    with open(pulled["dir"] / digest.split(":", 1)[1]) as f:
        config = json.load(f)
    assert (config["architecture"], config["os"]) == ("wasm", "wasip1")
    assert len(config["rootfs"]["diff_ids"]) == 1


def test_printed_digests_are_what_istio_compares(image, pulled, wasm_module):
    """The manifest digest (the registry's digest of the manifest bytes) is what Istio
    compares WasmPlugin.spec.sha256 with for oci:// URLs; the build prints it in the
    form the CRD accepts, and the module's own sha256 (for file:// and https:// URLs)."""
    printed = image["printed"]
    digest = "sha256:" + hashlib.sha256(pulled["raw"]).hexdigest()
    assert printed["manifest digest"] == digest
    p = subprocess.run([_skopeo(), "inspect", "--format", "{{.Digest}}", f"oci:{image['layout']}:{TAG}"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.strip() == digest, p.stdout + p.stderr
    assert ISTIO_SHA256.match(printed["WasmPlugin sha256"])
    assert printed["WasmPlugin sha256"] == digest.split(":", 1)[1]
    assert printed["module sha256"] == _sha256(wasm_module)


def test_same_module_gives_the_same_image(image, wasm_module, tmp_path):
    again = _build(wasm_module, tmp_path / "again")
    assert again == image["printed"]


def test_build_refuses_a_file_that_is_not_wasm(tmp_path):
    bogus = tmp_path / "not.wasm"
    bogus.write_bytes(b"#!/bin/sh\n")
    p = subprocess.run([BUILD_OCI, str(bogus), str(tmp_path / "out"), TAG], cwd=REPO_ROOT,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "not a wasm module" in p.stderr
    assert not (tmp_path / "out").exists()


# ---- the Istio example ---------------------------------------------------------

def _istio_docs():
    with open(ISTIO_EXAMPLE) as f:
        docs = {}
        for d in yaml.safe_load_all(f):
            assert d["kind"] not in docs, d["kind"]
            docs[d["kind"]] = d
    assert set(docs) == {"WasmPlugin", "ServiceEntry", "DestinationRule"}, sorted(docs)
    return docs


def test_istio_example_pins_the_image_it_documents():
    """The example cannot hold a digest that stays valid across builds: its sha256 is a
    placeholder that Istio's CRD refuses (so it is never applied unpinned), its comment
    says to paste what `make oci` prints, and its URL carries the tag `make oci` uses."""
    spec = _istio_docs()["WasmPlugin"]["spec"]
    assert spec["url"].startswith("oci://")
    assert not ISTIO_SHA256.match(spec["sha256"]) and "make-oci" in spec["sha256"]
    with open(ISTIO_EXAMPLE) as f:
        text = f.read()
    assert "make oci" in text and '"WasmPlugin sha256:"' in text
    with open(os.path.join(REPO_ROOT, "Cargo.toml")) as f:
        version = re.search(r'^version\s*=\s*"([^"]+)"', f.read(), re.M).group(1)
    assert spec["url"].endswith(":" + version), (spec["url"], version)


def test_istio_example_reaches_the_idp_over_tls():
    """remote_jwks.cluster is the outbound cluster Istio makes of the ServiceEntry, and
    the DestinationRule originates TLS (SNI = the host) on that very port."""
    docs = _istio_docs()
    se, dr = docs["ServiceEntry"]["spec"], docs["DestinationRule"]["spec"]
    providers = docs["WasmPlugin"]["spec"]["pluginConfig"]["jwt"]["providers"]
    remote = [p["remote_jwks"] for p in providers if "remote_jwks" in p]
    assert len(remote) == 1
    (host,) = se["hosts"]
    (port,) = se["ports"]
    assert se["location"] == "MESH_EXTERNAL" and se["resolution"] == "DNS"
    assert remote[0]["cluster"] == f"outbound|{port['number']}||{host}" == "outbound|443||idp.example.com"
    assert remote[0]["authority"] == host
    assert dr["host"] == host
    (tls,) = [s["tls"] for s in dr["trafficPolicy"]["portLevelSettings"] if s["port"]["number"] == port["number"]]
    assert tls["mode"] == "SIMPLE" and tls["sni"] == host
    assert tls.get("caCertificates") or tls.get("credentialName")  # the server's certificate is checked
    assert not tls.get("insecureSkipVerify")
