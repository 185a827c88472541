"""Drives the real LaunchDarkly Python server-side SDK for Flagstaff's tests.

One JSON command per line on stdin, one JSON answer per line on stdout (the same protocol as
../node/driver.mjs). Commands:

  {"cmd": "open", "id": "c1", "sdkKey": "...", "baseUri": "http://127.0.0.1:P",
   "stream": true, "startWait": 5, "caCert": "/path/ca.pem" (optional: trust this CA)}
      -> {"initialized": bool}
  {"cmd": "evaluate", "id": "c1", "evaluations": [{"flagKey": "f", "context": {...},
   "default": <json>, "valueType": "bool"|"int"|"double"|"string"|"any"}]}
      -> {"results": [{"value": ..., "variationIndex": n|null, "reason": {...}}]}
  {"cmd": "track", "id": "c1", "key": "purchase", "context": {...}, "data": <json>,
   "metricValue": 9.5} -> {}
  {"cmd": "flush", "id": "c1"} -> {}
  {"cmd": "close", "id": "c1"} -> {}

The Python SDK has no typed variation methods, so `valueType` is ignored: results are what
`variation_detail` returns. Any exception becomes {"error": "..."}.
"""

import json
import logging
import sys

from ldclient import Context, LDClient
from ldclient.config import Config, HTTPConfig

logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

clients = {}


def context_of(value):
    if isinstance(value, dict):
        return Context.from_dict(value)
    # Not an object: let the SDK see an invalid context, as an application bug would.
    return Context.create("")


def handle(command):
    cmd = command["cmd"]
    if cmd == "open":
        base = command["baseUri"]
        config = Config(
            command["sdkKey"],
            base_uri=base,
            stream_uri=base,
            events_uri=base,
            stream=command.get("stream", True),
            flush_interval=1,
            initial_reconnect_delay=command.get("initialReconnectDelay", 0.2),
            poll_interval=command.get("pollInterval", 30),
            diagnostic_opt_out=False,
            private_attributes=set(command.get("privateAttributes", [])),
            http=HTTPConfig(ca_certs=command.get("caCert")),
        )
        client = LDClient(config=config, start_wait=command.get("startWait", 5))
        clients[command["id"]] = client
        return {"initialized": client.is_initialized()}
    if cmd == "evaluate":
        client = clients[command["id"]]
        results = []
        for evaluation in command["evaluations"]:
            detail = client.variation_detail(
                evaluation["flagKey"],
                context_of(evaluation.get("context")),
                evaluation.get("default"),
            )
            results.append(
                {
                    "value": detail.value,
                    "variationIndex": detail.variation_index,
                    "reason": detail.reason,
                }
            )
        return {"results": results}
    if cmd == "track":
        clients[command["id"]].track(
            command["key"],
            context_of(command.get("context")),
            data=command.get("data"),
            metric_value=command.get("metricValue"),
        )
        return {}
    if cmd == "flush":
        clients[command["id"]].flush()
        return {}
    if cmd == "close":
        client = clients.pop(command["id"], None)
        if client is not None:
            client.close()
        return {}
    return {"error": "unknown command " + cmd}


def main():
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            answer = handle(json.loads(line))
        except Exception as e:  # noqa: BLE001 - every failure is reported to the test
            answer = {"error": "%s: %s" % (type(e).__name__, e)}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    for client in clients.values():
        client.close()


if __name__ == "__main__":
    main()
