"""Parses OpenMetrics text on stdin with the Prometheus project's Python client (a parser we
did not write) and prints every sample as JSON: [[name, {labels}, value], ...]. A parse error
exits non-zero with the parser's message."""
import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families

samples = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        samples.append([s.name, s.labels, s.value])
print(json.dumps(samples))
