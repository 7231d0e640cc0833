// Parses docs/asyncapi.yaml with the AsyncAPI parser (references resolved, the schemas in
// schema/ included) and fails on any error. Run: cd tests/asyncapi && npm install && node check.mjs
import { fileURLToPath } from 'node:url';
import { Parser, fromFile } from '@asyncapi/parser';

const path = fileURLToPath(new URL('../../docs/asyncapi.yaml', import.meta.url));
const { document, diagnostics } = await fromFile(new Parser(), path).parse();
const errors = diagnostics.filter((diagnostic) => diagnostic.severity === 0);
for (const diagnostic of diagnostics) {
  console.log(diagnostic.severity, diagnostic.code, diagnostic.message);
}
if (!document || errors.length > 0) {
  process.exit(1);
}
console.log(`parsed: ${document.channels().length} channels, ${document.messages().length} messages`);
