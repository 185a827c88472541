// Drives the real LaunchDarkly Node server-side SDK for Flagstaff's tests.
//
// One JSON command per line on stdin, one JSON answer per line on stdout; the same protocol as
// ../python/driver.py (see there). Node has typed variation methods, so `valueType` picks
// boolVariationDetail, numberVariationDetail (for "int" and "double"), stringVariationDetail or
// variationDetail (for "any"), and their WRONG_TYPE checks apply.
import * as readline from 'node:readline';
import { readFileSync } from 'node:fs';
import { init, basicLogger } from '@launchdarkly/node-server-sdk';
import { RedisFeatureStore } from '@launchdarkly/node-server-sdk-redis';

const clients = new Map();
// Every SDK log line (info and above), for the `status` command: tests look for the FDv1
// fallback there.
const logs = [];

async function handle(command) {
  switch (command.cmd) {
    case 'open': {
      const base = command.baseUri;
      const client = init(command.sdkKey, {
        baseUri: base,
        streamUri: base,
        eventsUri: base,
        stream: command.stream ?? true,
        pollInterval: command.pollInterval ?? 30,
        flushInterval: 1,
        privateAttributes: command.privateAttributes ?? [],
        streamInitialReconnectDelay: command.initialReconnectDelay ?? 0.2,
        logger: basicLogger({
          level: 'info',
          destination: (line) => {
            logs.push(line);
            if (!line.startsWith('info:')) process.stderr.write(`${line}\n`);
          },
        }),
        // `dataSystem`: the SDK's FDv2 data system instead of the FDv1 data source:
        // "default" (LaunchDarkly's recommended poll-then-stream), "streaming" or "polling".
        ...(command.dataSystem ? {
          dataSystem: {
            dataSource: {
              dataSourceOptionsType: {
                default: 'standard', streaming: 'streamingOnly', polling: 'pollingOnly',
              }[command.dataSystem],
              streamInitialReconnectDelay: command.initialReconnectDelay ?? 0.2,
              pollInterval: command.pollInterval ?? 30,
            },
          },
        } : {}),
        // `redis`: daemon mode (`useLdd`), flags read from LaunchDarkly's Redis store layout.
        ...(command.redis ? {
          useLdd: true,
          featureStore: RedisFeatureStore({
            redisOpts: command.redis.url,
            prefix: command.redis.prefix,
            cacheTTL: command.redis.cacheSeconds ?? 1,
          }),
        } : {}),
        // `caCert`: trust this certificate authority (a test's throwaway CA) for HTTPS.
        ...(command.caCert ? { tlsParams: { ca: readFileSync(command.caCert) } } : {}),
      });
      clients.set(command.id, client);
      try {
        await client.waitForInitialization({ timeout: command.startWait ?? 5 });
      } catch (e) {
        // Not initialized (timeout or a refused key): evaluations return defaults.
      }
      return { initialized: client.initialized() };
    }
    case 'evaluate': {
      const client = clients.get(command.id);
      const results = [];
      for (const evaluation of command.evaluations) {
        const { flagKey, context, valueType } = evaluation;
        const fallback = evaluation.default ?? null;
        let detail;
        switch (valueType) {
          case 'bool': detail = await client.boolVariationDetail(flagKey, context, fallback); break;
          case 'int':
          case 'double': detail = await client.numberVariationDetail(flagKey, context, fallback); break;
          case 'string': detail = await client.stringVariationDetail(flagKey, context, fallback); break;
          default: detail = await client.variationDetail(flagKey, context, fallback);
        }
        results.push({
          value: detail.value === undefined ? null : detail.value,
          variationIndex: detail.variationIndex ?? null,
          reason: detail.reason,
        });
      }
      return { results };
    }
    case 'status': {
      // Every client's log lines since the process started; `initialized` once closed is false.
      return { initialized: clients.get(command.id)?.initialized() ?? false, logs };
    }
    case 'track': {
      const client = clients.get(command.id);
      client.track(command.key, command.context, command.data ?? undefined, command.metricValue ?? undefined);
      return {};
    }
    case 'flush': {
      await clients.get(command.id).flush();
      return {};
    }
    case 'close': {
      const client = clients.get(command.id);
      clients.delete(command.id);
      if (client) client.close();
      return {};
    }
    default:
      return { error: `unknown command ${command.cmd}` };
  }
}

const lines = readline.createInterface({ input: process.stdin });
// Commands are answered in order, one at a time.
let queue = Promise.resolve();
lines.on('line', (line) => {
  if (!line.trim()) return;
  queue = queue.then(async () => {
    let answer;
    try {
      answer = await handle(JSON.parse(line));
    } catch (e) {
      answer = { error: `${e?.name}: ${e?.message}` };
    }
    process.stdout.write(`${JSON.stringify(answer)}\n`);
  });
});
lines.on('close', () => {
  queue.then(() => {
    for (const client of clients.values()) client.close();
    process.exit(0);
  });
});
