// patterns.mjs SPEC: every `pattern` of the document compiles as an
// ECMAScript regular expression with the u flag (what JSON Schema
// validators in JavaScript, ajv among them, use), and the document's
// request examples match their field's pattern. Go checks the same
// patterns against keyvend's validators (pkg/httpapi TestOpenAPIPatterns).
import { readFileSync } from "node:fs";

const spec = JSON.parse(readFileSync(process.argv[2], "utf8"));
let n = 0;
const bad = [];
(function walk(v, at) {
  if (Array.isArray(v)) return v.forEach((x, i) => walk(x, `${at}/${i}`));
  if (v === null || typeof v !== "object") return;
  for (const [k, x] of Object.entries(v)) {
    if (k === "pattern" && typeof x === "string") {
      n++;
      try {
        new RegExp(x, "u");
      } catch (e) {
        bad.push(`${at}/pattern: ${e.message}`);
      }
    }
    walk(x, `${at}/${k}`);
  }
})(spec, "#");
// Samples the server accepts must match in JavaScript too (Unicode ones).
const reason = new RegExp(spec.components.schemas.CreateRequest.properties.reason.pattern, "u");
for (const ok of ["blog deploys", "Übersetzung für CI: 2024/1", "デプロイ", "a\u3000b"]) {
  if (!reason.test(ok)) bad.push(`reason pattern refuses ${JSON.stringify(ok)}`);
}
for (const no of ["   ", "a\tb", "a\nb", "a!b", "x²"]) {
  if (reason.test(no)) bad.push(`reason pattern accepts ${JSON.stringify(no)}`);
}
if (bad.length) {
  console.error(bad.join("\n"));
  process.exit(1);
}
console.log(`patterns.mjs: ${n} patterns compile with the u flag`);
