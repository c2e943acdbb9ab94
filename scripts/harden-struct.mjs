// Post-generation step of `npm run gen` (never hand-edit src/gen): ts-proto's Struct code assigns
// `obj[key] = value`, so a JSON key named `__proto__` replaces the object's prototype instead of
// becoming a key, and the key vanishes silently. Defining own properties keeps every key, so the
// gateway's validation can see and refuse it. Fails loudly if ts-proto's output changes shape.
import { readFileSync, writeFileSync } from 'node:fs';

const file = 'src/gen/google/protobuf/struct.ts';
const own = (target, key, value) =>
  `globalThis.Object.defineProperty(${target}, ${key}, { value: ${value}, enumerable: true, configurable: true, writable: true });`;
const rewrites = [
  [
    'message.fields[entry1.key] = entry1.value;',
    own('message.fields', 'entry1.key', 'entry1.value'),
  ],
  ['struct.fields[key] = object[key];', own('struct.fields', 'key', 'object[key]')],
  ['object[key] = message.fields[key];', own('object', 'key', 'message.fields[key]')],
];

let text = readFileSync(file, 'utf8');
for (const [from, to] of rewrites) {
  const count = text.split(from).length - 1;
  if (count !== 1) {
    console.error(`harden-struct: expected exactly one '${from}' in ${file}, found ${count}`);
    process.exit(1);
  }
  text = text.replace(from, to);
}
writeFileSync(file, text);
