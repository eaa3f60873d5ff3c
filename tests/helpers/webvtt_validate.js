// Validate WebVTT files with the W3C's parser (npm webvtt-parser, CC0): prints one JSON line per file,
// {"path", "cues", "errors": [{message, line, col}]}. Usage: node webvtt_validate.js NODE_MODULES FILE...
const path = require("path");
const fs = require("fs");
const { WebVTTParser } = require(path.join(process.argv[2], "webvtt-parser"));
for (const file of process.argv.slice(3)) {
  const tree = new WebVTTParser().parse(fs.readFileSync(file, "utf8"), "metadata");
  const cues = tree.cues.map((c) => ({ start: c.startTime, end: c.endTime, text: c.text }));
  console.log(JSON.stringify({ path: file, cues: cues, errors: tree.errors }));
}
