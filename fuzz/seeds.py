#!/usr/bin/env python3
"""Writes the seed corpora under corpus/<target>/ (run from anywhere; idempotent).

Sources: the Azure documentation's two samples (examples/requests/), the vendor's XML
sample (its support article, placeholder digest included), the plugin configuration
in ../envoy.yaml, and a few hand-written variants. A vendor seed starting with a NUL byte is a payload
that the target wraps in an envelope with a correct md5 (see src/lib.rs)."""
import hashlib, json, os, re, sys, urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

def md5(b):
    return hashlib.md5(b if isinstance(b, bytes) else b.encode()).hexdigest()

# --- azure: both documented samples, verbatim, and real-looking variants
samples = [open(os.path.join(ROOT, "examples", "requests", f"azure-{name}.json")).read() for name in ["service-catalog", "marketplace-failed"]]
write("azure", "spec-service-catalog.json", samples[0])
write("azure", "spec-marketplace-failed.json", samples[1])
real = samples[0].replace("subscriptions/<subId>", "/subscriptions/0b88dfdb-55b3-4fb0-b474-5b6dcbe6b2ef") \
    .replace("<rgName>", "my-rg").replace("<applicationName>", "shop").replace("<appDefName>", "def")
write("azure", "real-catalog.json", real)
write("azure", "delete-deleting-compact.json", json.dumps(json.loads(real) | {"eventType": "delete", "provisioningState": "DELETING", "eventTime": "2024-02-29T23:59:59+00:00"}, separators=(",", ":")))
write("azure", "patch-marketplace.json", json.dumps(json.loads(samples[1]) | {"eventType": "PATCH", "provisioningState": "Succeeded", "future": {"x": [1, 2.5, None, True]}}))
# Real-shaped drift from the end-to-end corpus (tests/corpus/azure): nonconforming, accepted.
for name in ["marketplace-put-succeeded-no-billing", "catalog-put-succeeded-4-digits-offset-minus", "time-without-offset-7-digits", "pair-patch-failed", "flavour-neither"]:
    write("azure", f"real-{name}.json", open(os.path.join(ROOT, "tests", "corpus", "azure", f"{name}.json")).read())

# --- vendor: the spec's ping in every syntax, a purchase, and the malformed XML sample
ping_json = '{ "type": "ping", "epoch_timestamp": 1466526410 }'
purchase_json = '{"type":"App.Purchase","app_id":42,"sku":{"id":"gold","qty":3},"tags":["a","b"],"epoch_timestamp":1700000000}'
for name, p in [("ping", ping_json), ("purchase", purchase_json)]:
    write("vendor_json", f"{name}.json", '{ "payload": %s, "md5": "%s" }' % (p, md5(p)))
    write("vendor_json", f"{name}.payload", b"\0" + p.encode())
    write("vendor_form", f"{name}.form", "payload=%s&md5=%s" % (urllib.parse.quote_plus(p), md5(p)))
    write("vendor_form", f"{name}.payload", b"\0" + p.encode())
write("vendor_json", "ping-wrong-md5.json", '{"payload": %s, "md5": "%s"}' % (ping_json, md5("x")))
write("vendor_form", "extra-fields.form", "&x=1&&md5=%s&payload=%s&note=a+b%%20c&flag" % (md5(ping_json), urllib.parse.quote(ping_json)))

ping_xml = "<type>ping</type><epoch_timestamp>1466526410</epoch_timestamp>"
purchase_xml = ("\n  <type>SKU_Purchase</type>\n  <sku a=\"1\">\n    <id>gold</id>\n    <qty>3</qty>\n  </sku>\n"
                "  <empty/>\n  <note>a &lt;b&gt; &amp; &quot;c&quot; &#233;&#x4E2D;</note>\n  <raw><![CDATA[<not> & markup]]></raw>\n")
for name, p in [("ping", ping_xml), ("purchase", purchase_xml)]:
    write("vendor_xml", f"{name}.xml", "<notification><payload>%s</payload><md5>%s</md5></notification>" % (p, md5(p)))
    write("vendor_xml", f"{name}.payload", b"\0" + p.encode())
write("vendor_xml", "declaration-bom-comments.xml",
      "\ufeff<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- hi -->\n<notification xmlns=\"urn:x\">\n <payload>%s</payload>\n <md5>\n  %s\n </md5>\n <extra/>\n</notification>\n" % (ping_xml, md5(ping_xml).upper()))
xml_sample = "<notification><payload><type>ping</type><epoch_timestamp>1466526410</epoch_timestamp></payload><md5>...</md5></notification>"
write("vendor_xml", "spec-sample-placeholder.xml", xml_sample)
write("vendor_xml", "spec-malformed-timestamp.xml",
      "<notification><payload><type>ping</type><epoch_timestamp>1466526410</timestamp></payload><md5>d41d8cd98f00b204e9800998ecf8427e</md5></notification>")

# --- config: the configuration in envoy.yaml, and variants using every field
envoy = open(os.path.join(ROOT, "envoy.yaml")).read()
block = re.search(r"value: \|\n((?:[ ]{20,}.*\n)+)", envoy).group(1)
write("config", "envoy-yaml.json", "\n".join(l[20:] for l in block.splitlines()) + "\n")
write("config", "two-endpoints.json", json.dumps({"endpoints": [
    {"name": "azure", "path": "/api/resource", "profile": "azure_managed_app",
     "secret": {"param": "sig", "values": ["demo-secret", " rotated "]}, "max_body_bytes": 65536,
     "forward": "cloudevent", "upstream_4xx": "retry"},
    {"name": "vendor-1", "path": "/vendor", "profile": "md5_envelope",
     "secret": {"param": "key", "env": ["WEBHOOK_SIG"]}, "max_body_bytes": 16777216,
     "forward": "original", "upstream_4xx": "pass", "dedupe_seconds": 36000}]}, indent=1))
write("config", "minimal.json", '{"endpoints":[{"name":"a","path":"/a","profile":"md5_envelope","secret":{"values":["s3cret"]}}]}')

write("config", "unguarded-reject.json", '{"unguarded":"reject","endpoints":[{"name":"a","path":"/API/a/","profile":"azure_managed_app","secret":{"values":["s3cret"]}}]}')

# --- route: spellings of a guarded path (tests/e2e/bypass.rs), ambiguous ones, neighbours
for i, p in enumerate(["/api/resource", "/API/Resource/", "/api/resource;x=1", "/api;v=1/resource/.",
                       "/api/resource.json", "/api/resource%20", "/api//resource", "/api/./x/../resource",
                       "/api/%72esource", "/api%2Fresource", "/api\\resource", "/api/%2572esource",
                       "/api/resource%00.png", "/api/resource%ff", "/api/resource;a%2F%", "/api/x/..;/resource",
                       "/api/re%C5%BFource", "/api/resource%", "/api/resources", "/"]):
    write("route", f"p{i}", p)

# --- query: secret parameter spellings
for i, q in enumerate(["sig=demo-secret", "a=1&sig=a%2Bb%3D&b=2", "s%69g=x&a", "sig=a&sig=b",
                       "sig=%zz", "x=1&&=&sig&y=%20+", "b=2&a=1&SIG=k&sig=", "s%6=x&sig=k"]):
    write("query", f"q{i}", q)

# --- azure_event_grid_delivery: Azure's documented samples (src/profile/azure_event_grid/samples),
# a batch of two, a CloudEvents batch, and variants of what is flagged or refused
EG = os.path.join(ROOT, "src", "profile", "azure_event_grid", "samples")
eg = {name: open(os.path.join(EG, name)).read().strip() for name in sorted(os.listdir(EG))}
for name, body in eg.items():
    write("azure_event_grid_delivery", "spec-" + name, body)
blob = eg["blob_created.json"]
write("azure_event_grid_delivery", "batch-two.json", "[%s,%s]" % (blob[1:-1], blob[1:-1].replace("069631", "069632")))
write("azure_event_grid_delivery", "cloudevents-batch.json", "[%s]" % eg["cloudevent_blob_created.json"])
write("azure_event_grid_delivery", "batch-one-bad.json", '[%s,{"topic":"/t","eventType":"X"},7]' % blob[1:-1])
write("azure_event_grid_delivery", "unbatched.json", blob[1:-1])
write("azure_event_grid_delivery", "empty.json", "[]")
write("azure_event_grid_delivery", "pretty.json", json.dumps(json.loads(blob), indent=2))
