// Evaluates flags through OpenFeature's real OFREP provider (npm @openfeature/ofrep-provider
// with @openfeature/server-sdk) against a Flagstaff server, for Flagstaff's tests.
//
// Input (stdin, one JSON object): {"base": URL, "key": credential,
//   "evaluations": [{"flag": key, "type": "boolean"|"string"|"number"|"object",
//                    "default": value, "context": OpenFeature context}]}
// Output (stdout, one JSON array): per evaluation {"value", "reason", "variant", "errorCode",
//   "flagMetadata"} as the OpenFeature SDK reports them.
import { OpenFeature } from '@openfeature/server-sdk';
import { OFREPProvider } from '@openfeature/ofrep-provider';

let input = '';
for await (const chunk of process.stdin) input += chunk;
const { base, key, evaluations } = JSON.parse(input);

await OpenFeature.setProviderAndWait(
  new OFREPProvider({ baseUrl: base, headers: [['Authorization', `Bearer ${key}`]] }),
);
const client = OpenFeature.getClient();
const methods = {
  boolean: 'getBooleanDetails',
  string: 'getStringDetails',
  number: 'getNumberDetails',
  object: 'getObjectDetails',
};
const results = [];
for (const e of evaluations) {
  const details = await client[methods[e.type]](e.flag, e.default, e.context);
  results.push({
    value: details.value,
    reason: details.reason ?? null,
    variant: details.variant ?? null,
    errorCode: details.errorCode ?? null,
    flagMetadata: details.flagMetadata ?? {},
  });
}
process.stdout.write(JSON.stringify(results));
await OpenFeature.close();
