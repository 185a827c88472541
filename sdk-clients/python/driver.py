"""Drives the real LaunchDarkly Python server-side SDK for Flagstaff's tests.

One JSON command per line on stdin, one JSON answer per line on stdout (the same protocol as
../node/driver.mjs). Commands:

  {"cmd": "open", "id": "c1", "sdkKey": "...", "baseUri": "http://127.0.0.1:P",
   "stream": true, "startWait": 5, "caCert": "/path/ca.pem" (optional: trust this CA),
   "eventsUri": "..." (optional: send events elsewhere), "eventsCapacity": 10000 (optional),
   "redis": {"url": "redis://127.0.0.1:6379", "prefix": "...", "cacheSeconds": 1} (optional:
   daemon mode, `use_ldd`: flags are read from LaunchDarkly's Redis store, never from
   baseUri),
   "bigSegments": {"url": "redis://...", "prefix": "...", "staleAfterSeconds": 120,
   "statusPollSeconds": 5, "cacheSeconds": 5} (optional: LaunchDarkly's Redis big-segment
   store),
   "dataSystem": "default"|"streaming"|"polling" (optional: the SDK's FDv2 data system,
   `datasystem.default()` and friends, instead of the FDv1 data source)}
      -> {"initialized": bool}
  {"cmd": "status", "id": "c1"}
      -> {"state": "VALID"|...|null, "logs": ["WARNING ldclient.util: ...", ...]}
      The client's data source state (null once closed) and every SDK log line at INFO or
      above since the process started, of every client (tests look for the FDv1 fallback
      there).
  {"cmd": "evaluate", "id": "c1", "evaluations": [{"flagKey": "f", "context": {...},
   "default": <json>, "valueType": "bool"|"int"|"double"|"string"|"any"}]}
      -> {"results": [{"value": ..., "variationIndex": n|null, "reason": {...}}]}
  {"cmd": "track", "id": "c1", "key": "purchase", "context": {...}, "data": <json>,
   "metricValue": 9.5} -> {}
  {"cmd": "migrate", "id": "c1", "flagKey": "db", "context": {...}, "defaultStage": "off",
   "newFails": ["k"], "operations": [{"op": "write", "key": "k", "value": <json>},
   {"op": "read", "key": "k"}]}
      -> {"results": [{"origin": "old"|"new", "success": bool, "value": ...,
          "other": {"origin": ..., "success": ...} (writes to both systems)}],
          "old": {...}, "new": {...}}
      Runs reads and writes through the SDK's MigratorBuilder (latency, errors and reads
      compared by equality tracked) over two in-memory systems kept per client: "old" and
      "new" are their contents afterwards. The new system fails every operation on a key in
      `newFails`.
  {"cmd": "flush", "id": "c1"} -> {}
  {"cmd": "close", "id": "c1"} -> {}

The Python SDK has no typed variation methods, so `valueType` is ignored: results are what
`variation_detail` returns. Any exception becomes {"error": "..."}.
"""

import json
import logging
import sys

from ldclient import Context, LDClient, Result, datasystem
from ldclient.config import BigSegmentsConfig, Config, HTTPConfig
from ldclient.feature_store import CacheConfig
from ldclient.integrations import Redis
from ldclient.migrations import MigratorBuilder, Stage

logging.basicConfig(level=logging.WARNING, stream=sys.stderr)


class Captured(logging.Handler):
    """Keeps the SDK's log lines for the `status` command."""

    def __init__(self):
        super().__init__(level=logging.INFO)
        self.lines = []

    def emit(self, record):
        self.lines.append("%s %s: %s" % (record.levelname, record.name, record.getMessage()))


captured = Captured()
logging.getLogger("ldclient").addHandler(captured)
logging.getLogger("ldclient").setLevel(logging.INFO)
# Only warnings reach stderr; the test reads the rest through `status`.
for handler in logging.getLogger().handlers:
    handler.setLevel(logging.WARNING)

clients = {}
# The two systems of each client's migration: {"old": {key: value}, "new": {key: value}}.
systems = {}


def context_of(value):
    if isinstance(value, dict):
        return Context.from_dict(value)
    # Not an object: let the SDK see an invalid context, as an application bug would.
    return Context.create("")


def handle(command):
    cmd = command["cmd"]
    if cmd == "open":
        base = command["baseUri"]
        daemon = {}
        redis = command.get("redis")
        if redis is not None:
            daemon = {
                "use_ldd": True,
                "feature_store": Redis.new_feature_store(
                    url=redis["url"],
                    prefix=redis["prefix"],
                    caching=CacheConfig(expiration=redis.get("cacheSeconds", 1)),
                ),
            }
        big = command.get("bigSegments")
        if big is not None:
            daemon["big_segments"] = BigSegmentsConfig(
                store=Redis.new_big_segment_store(url=big["url"], prefix=big["prefix"]),
                context_cache_time=big.get("cacheSeconds", 5),
                status_poll_interval=big.get("statusPollSeconds", 5),
                stale_after=big.get("staleAfterSeconds", 120),
            )
        data_system = command.get("dataSystem")
        if data_system is not None:
            daemon["datasystem_config"] = {
                "default": datasystem.default,
                "streaming": datasystem.streaming,
                "polling": datasystem.polling,
            }[data_system]().build()
        config = Config(
            command["sdkKey"],
            base_uri=base,
            stream_uri=base,
            events_uri=command.get("eventsUri", base),
            events_max_pending=command.get("eventsCapacity", 10000),
            stream=command.get("stream", True),
            flush_interval=1,
            initial_reconnect_delay=command.get("initialReconnectDelay", 0.2),
            poll_interval=command.get("pollInterval", 30),
            diagnostic_opt_out=False,
            private_attributes=set(command.get("privateAttributes", [])),
            http=HTTPConfig(ca_certs=command.get("caCert")),
            **daemon,
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
    if cmd == "status":
        client = clients.get(command["id"])
        state = None
        if client is not None:
            state = client.data_source_status_provider.status.state
            state = getattr(state, "name", str(state)).upper()
        return {"state": state, "logs": captured.lines}
    if cmd == "track":
        clients[command["id"]].track(
            command["key"],
            context_of(command.get("context")),
            data=command.get("data"),
            metric_value=command.get("metricValue"),
        )
        return {}
    if cmd == "migrate":
        return migrate(command)
    if cmd == "flush":
        clients[command["id"]].flush()
        return {}
    if cmd == "close":
        client = clients.pop(command["id"], None)
        if client is not None:
            client.close()
        return {}
    return {"error": "unknown command " + cmd}


def migrate(command):
    client = clients[command["id"]]
    stores = systems.setdefault(command["id"], {"old": {}, "new": {}})
    failing = set(command.get("newFails", []))

    def reader(origin):
        def read(key):
            if origin == "new" and key in failing:
                return Result.fail("the new system is down for " + key)
            return Result.success(stores[origin].get(key))

        return read

    def writer(origin):
        def write(payload):
            key, value = payload
            if origin == "new" and key in failing:
                return Result.fail("the new system is down for " + key)
            stores[origin][key] = value
            return Result.success(None)

        return write

    builder = MigratorBuilder(client)
    builder.track_latency(True)
    builder.track_errors(True)
    builder.read(reader("old"), reader("new"), lambda a, b: a == b)
    builder.write(writer("old"), writer("new"))
    migrator = builder.build()
    if isinstance(migrator, str):
        return {"error": migrator}
    context = context_of(command.get("context"))
    default = Stage.from_str(command.get("defaultStage", "off"))
    results = []
    for operation in command["operations"]:
        if operation["op"] == "read":
            result = migrator.read(command["flagKey"], context, default, operation["key"])
            results.append(outcome(result))
        else:
            payload = (operation["key"], operation.get("value"))
            written = migrator.write(command["flagKey"], context, default, payload)
            answer = outcome(written.authoritative)
            if written.nonauthoritative is not None:
                answer["other"] = outcome(written.nonauthoritative)
            results.append(answer)
    return {"results": results, "old": stores["old"], "new": stores["new"]}


def outcome(result):
    return {"origin": result.origin.value, "success": result.is_success(), "value": result.value}


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
