// Writes classic_cases.json: user agents and what the classic integration's parser made of them
// (browser name, major version, OS name), the expectations of `user_agent`'s tests. The parser is
// Amplitude's fork of ua-parser-js at the commit the classic integration pinned:
//
//   git clone https://github.com/amplitude/ua-parser-js && git -C ua-parser-js checkout fbdb1dc
//   node classic_cases.mjs ua-parser-js > classic_cases.json
//
// The agents: those of the fork's own tests at that commit (MIT), and modern_agents.txt beside
// this file (browsers and apps of 2023-2024, bots and HTTP libraries).
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";

const fork = resolve(process.argv[2]);
const require = createRequire(import.meta.url);
const UAParser = require(`${fork}/src/ua-parser.js`);

const agents = new Set();
for (const suite of ["browser", "os", "device", "engine", "cpu"]) {
  for (const test of JSON.parse(readFileSync(`${fork}/test/${suite}-test.json`, "utf8"))) {
    if (test.ua) agents.add(test.ua);
  }
}
const here = new URL(".", import.meta.url);
for (const line of readFileSync(new URL("modern_agents.txt", here), "utf8").split("\n")) {
  if (line) agents.add(line);
}
const cases = [...agents].map((ua) => {
  const r = new UAParser(ua).getResult();
  return [ua, r.browser.name || null, r.browser.major || null, r.os.name || null];
});
console.log(JSON.stringify(cases, null, 1));
