"""Scrapes an ExpertMesh /metrics endpoint and prints its samples as JSON, read by Prometheus's own
text parser (prometheus_client). Exit status 2 when the server refuses the scrape.

Usage: python3 metrics_samples.py URL [--key KEY]
"""
import argparse
import json
import sys
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("url")
parser.add_argument("--key")
args = parser.parse_args()

request = urllib.request.Request(args.url)
if args.key:
    request.add_header("Authorization", "Bearer " + args.key)
try:
    with urllib.request.urlopen(request, timeout=10) as response:
        content_type = response.headers.get("Content-Type", "")
        text = response.read().decode()
except urllib.error.HTTPError as error:
    print(json.dumps({"status": error.code}))
    sys.exit(2)

families = {}
for family in text_string_to_metric_families(text):
    families[family.name] = {
        "type": family.type,
        "samples": [[sample.name, sample.labels, sample.value] for sample in family.samples],
    }
print(json.dumps({"status": 200, "content_type": content_type, "families": families}))
