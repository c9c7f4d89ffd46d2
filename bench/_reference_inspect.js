// Per-file time of Particle's own parser (binary-version-reader's HalModuleParser.parseFile) in one
// node process: every file parsed ROUNDS times after one warm-up round; prints one JSON object.
// Usage: node _reference_inspect.js MODULE_DIR ROUNDS FILE...
'use strict';
const path = require('path');
const [moduleDir, roundsArg, ...files] = process.argv.slice(2);
const { HalModuleParser } = require(path.join(moduleDir, 'binary-version-reader'));

async function round(parser) {
  let parsed = 0;
  for (const file of files) {
    try {
      await parser.parseFile(file);
      parsed += 1;
    } catch (err) {
      // Not a module (an ESP image, a partition table): the reference refuses it, as fwtool does.
    }
  }
  return parsed;
}

(async () => {
  const parser = new HalModuleParser();
  const rounds = Number(roundsArg);
  await round(parser);
  const start = process.hrtime.bigint();
  let parsed = 0;
  for (let i = 0; i < rounds; i += 1) {
    parsed = await round(parser);
  }
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  console.log(JSON.stringify({ files: files.length, parsed, rounds, seconds_per_file: seconds / rounds / files.length }));
})();
