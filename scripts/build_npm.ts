/**
 * Builds the npm package of streamfutures into `npm/` and tests it under Node.
 *
 * This stands in for `dnt` (JSR isn't reachable here). It uses only the
 * TypeScript compiler from `node_modules/.bin/tsc` and the `node` on PATH.
 *
 * Steps:
 *  1. Delete `npm/`. Write a tsconfig to a temp dir, plus an ambient
 *     `ImportMeta.main` declaration (Deno has it, @types/node 20 doesn't).
 *     Then run tsc on mod.ts, worker.ts, lib/, examples/ and tests/. tsc turns
 *     relative `.ts` imports into `.js` in the emitted JS
 *     (`rewriteRelativeImportExtensions`). A type error stops the build and
 *     nothing is emitted (`noEmitOnError`).
 *  2. Fix up what tsc leaves alone. In `.d.ts` files, rewrite relative `.ts`
 *     specifiers to `.js`. Give `worker.js` a `#!/usr/bin/env node` shebang
 *     and make it executable.
 *  3. Write `npm/package.json`, taking name, version and license from
 *     deno.json. Each `npm:<name>@<range>` entry in deno.json `imports`
 *     becomes a dependency.
 *  4. Copy README.md and LICENSE into `npm/`.
 *  5. Smoke test: import the package by its own name under Node, which
 *     checks the `exports` map and that dependencies resolve. Node finds them
 *     in `../node_modules`, so nothing is installed in `npm/`.
 *  6. Unless `--no-test` is given, run the compiled tests with
 *     `node --test --test-concurrency=1 <files>`. Node 20 needs the files
 *     listed one by one. The script exits with the test runner's exit code.
 *
 * Usage:
 *   deno task build:npm                 # build + test
 *   deno task build:npm --no-test       # build only
 *   deno run -A scripts/build_npm.ts --root /path/to/project
 */

import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, copyFile, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join, relative, resolve } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const PACKAGE_NAME = "streamfutures";
const DEFAULT_DESCRIPTION =
  "Python concurrent.futures-style futures and executors over Redis Streams, for Deno and Node.";
const NODE_SHEBANG = "#!/usr/bin/env node";

const USAGE = "Usage: deno run -A scripts/build_npm.ts [--no-test] [--root <project dir>]";

function parseFlags() {
  try {
    return parseArgs({
      args: Deno.args,
      options: {
        "no-test": { type: "boolean", default: false },
        root: { type: "string" },
        help: { type: "boolean", short: "h", default: false },
      },
    }).values;
  } catch (error) {
    console.error(`${(error as Error).message}\n${USAGE}`);
    Deno.exit(2);
  }
}

const flags = parseFlags();
if (flags.help) {
  console.log(USAGE);
  Deno.exit(0);
}

const root = resolve(flags.root ?? fileURLToPath(new URL("..", import.meta.url)));
const outDir = join(root, "npm");
const tsc = join(root, "node_modules", ".bin", "tsc");

function log(message: string): void {
  console.log(`[build_npm] ${message}`);
}

function warn(message: string): void {
  console.warn(`[build_npm] warning: ${message}`);
}

function fail(message: string, code = 1): never {
  console.error(`[build_npm] error: ${message}`);
  Deno.exit(code);
}

/** Runs a command with inherited stdio and returns its exit code. */
function run(
  cmd: string,
  args: string[],
  options: { cwd?: string; env?: Record<string, string | undefined> } = {},
): number {
  const result = spawnSync(cmd, args, {
    stdio: "inherit",
    cwd: options.cwd ?? root,
    env: options.env,
  });
  if (result.error) fail(`could not run ${cmd}: ${result.error.message}`);
  if (result.signal) fail(`${cmd} was killed by ${result.signal}`);
  return result.status ?? 1;
}

/** Yields every file below `dir`, recursively, as an absolute path. */
async function* walk(dir: string): AsyncGenerator<string> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* walk(path);
    else if (entry.isFile()) yield path;
  }
}

interface DenoConfig {
  name?: string;
  version?: string;
  license?: string;
  description?: string;
  imports?: Record<string, string>;
  compilerOptions?: Record<string, unknown>;
}

/**
 * Maps deno.json `imports` entries of the form `npm:<name>[@<range>][/<subpath>]`
 * to package.json dependencies. If an entry's key differs from the package
 * name, it becomes an npm alias (`"key": "npm:name@range"`), so the bare
 * specifier still resolves.
 */
function npmDependencies(imports: Record<string, string>): Record<string, string> {
  const deps: Record<string, string> = {};
  for (const [key, specifier] of Object.entries(imports)) {
    if (!specifier.startsWith("npm:")) {
      if (/^(jsr|https?):/.test(specifier)) {
        warn(`import "${key}" -> ${specifier} has no npm equivalent; skipped`);
      }
      continue;
    }
    const match = /^npm:\/?((?:@[^/@]+\/)?[^/@]+)(?:@([^/]+))?(?:\/.*)?$/.exec(specifier);
    if (!match) fail(`cannot parse npm specifier ${specifier}`);
    const [, name, range = "*"] = match;
    const keyPackage = /^(@[^/]+\/[^/]+|[^/]+)/.exec(key)?.[1] ?? key;
    const [depName, depRange] = keyPackage === name
      ? [name, range]
      : [keyPackage, `npm:${name}@${range}`];
    if (deps[depName] !== undefined && deps[depName] !== depRange) {
      fail(`conflicting versions for ${depName}: ${deps[depName]} vs ${depRange}`);
    }
    deps[depName] = depRange;
  }
  return deps;
}

/** Rewrites relative `.ts`/`.mts`/`.cts`/`.tsx` module specifiers to their JS forms. */
function rewriteDtsSpecifiers(source: string): string {
  const specifier =
    /(\bfrom\s*|\bimport\s*\(\s*|\bimport\s+|\brequire\s*\(\s*)(["'])(\.{1,2}\/[^"'\n]*?)(?<!\.d)\.([mc]?)tsx?\2/g;
  return source.replace(
    specifier,
    (_all, prefix, quote, path, kind) => `${prefix}${quote}${path}.${kind}js${quote}`,
  );
}

const started = performance.now();
const elapsed = () => `${((performance.now() - started) / 1000).toFixed(1)}s`;

const denoConfig: DenoConfig = JSON.parse(await readFile(join(root, "deno.json"), "utf8"));
if (!existsSync(tsc)) fail(`TypeScript compiler not found at ${tsc} (run npm install)`);

// Step 1: clean and compile.
log(`building ${PACKAGE_NAME}@${denoConfig.version} from ${root}`);
await rm(outDir, { recursive: true, force: true });

const tmp = await mkdtemp(join(tmpdir(), "streamfutures-npm-"));
let tscStatus: number;
try {
  const ambient = join(tmp, "deno_shims.d.ts");
  await writeFile(
    ambient,
    "// import.meta.main is a Deno extension; under Node it is undefined.\n" +
      "interface ImportMeta {\n  main?: boolean;\n}\n",
  );

  // deno.json compilerOptions (strictness flags, etc.) are kept. Deno-specific
  // lib/types/JSX settings are dropped because they don't apply under Node.
  const { lib: _lib, types: _types, jsx: _jsx, jsxImportSource: _jis, ...denoCompilerOptions } =
    denoConfig.compilerOptions ?? {};
  const tsconfig = {
    compilerOptions: {
      ...denoCompilerOptions,
      target: "ES2022",
      module: "NodeNext",
      moduleResolution: "NodeNext",
      lib: ["ES2022", "ESNext.Disposable"],
      types: ["node"],
      // The tsconfig lives in a temp dir, so point at the project's @types.
      typeRoots: [join(root, "node_modules", "@types")],
      strict: true,
      skipLibCheck: true,
      forceConsistentCasingInFileNames: true,
      rewriteRelativeImportExtensions: true,
      declaration: true,
      sourceMap: true,
      inlineSources: true,
      noEmitOnError: true,
      newLine: "lf",
      rootDir: root,
      outDir,
    },
    files: [ambient],
    // (The soak too, so that `node npm/scripts/soak.js` puts the Node build under its chaos.)
    include: [
      "mod.ts",
      "worker.ts",
      "lib/**/*.ts",
      "examples/**/*.ts",
      "tests/**/*.ts",
      "scripts/soak.ts",
      "scripts/_soak_tasks.ts",
    ].map((pattern) => join(root, pattern)),
  };
  const tsconfigPath = join(tmp, "tsconfig.json");
  await writeFile(tsconfigPath, JSON.stringify(tsconfig, null, 2) + "\n");

  log(`tsc -p ${tsconfigPath}`);
  tscStatus = run(tsc, ["-p", tsconfigPath]);
} finally {
  await rm(tmp, { recursive: true, force: true });
}
if (tscStatus !== 0) fail(`tsc failed with exit code ${tscStatus}; nothing was emitted`, tscStatus);
log(`compiled (${elapsed()})`);

// Step 2: fix up the emitted files.
let dtsRewritten = 0;
for await (const file of walk(outDir)) {
  if (!file.endsWith(".d.ts")) continue;
  const source = await readFile(file, "utf8");
  const rewritten = rewriteDtsSpecifiers(source);
  if (rewritten !== source) {
    await writeFile(file, rewritten);
    dtsRewritten++;
  }
  const leftover = /["']\.{1,2}\/[^"'\n]*(?<!\.d)\.[mc]?tsx?["']/.exec(rewritten);
  if (leftover) warn(`${relative(root, file)} still references ${leftover[0]}`);
}
log(`rewrote .ts specifiers to .js in ${dtsRewritten} declaration file(s)`);

const workerJs = join(outDir, "worker.js");
if (existsSync(workerJs)) {
  const source = await readFile(workerJs, "utf8");
  // tsc keeps the source shebang as-is (e.g. a Deno one), so replace it.
  await writeFile(workerJs, `${NODE_SHEBANG}\n${source.replace(/^#!.*\n/, "")}`);
  await chmod(workerJs, 0o755);
} else {
  warn("npm/worker.js was not emitted; the bin entry will be broken");
}

// Step 3: package.json.
const packageJson = {
  name: PACKAGE_NAME,
  version: denoConfig.version ?? fail("deno.json has no version"),
  description: denoConfig.description ?? DEFAULT_DESCRIPTION,
  license: denoConfig.license ?? "MIT",
  type: "module",
  main: "./mod.js",
  types: "./mod.d.ts",
  exports: {
    ".": { types: "./mod.d.ts", default: "./mod.js" },
    "./worker": { types: "./worker.d.ts", default: "./worker.js" },
    "./package.json": "./package.json",
  },
  bin: { "streamfutures-worker": "./worker.js" },
  engines: { node: ">=20" },
  dependencies: npmDependencies(denoConfig.imports ?? {}),
  // tests/ (and the soak, in scripts/) are built so they can run under Node, but they aren't
  // published.
  // (Patterns without a slash only match at the package root.)
  files: ["*.js", "*.d.ts", "*.map", "lib/", "examples/", "README.md", "LICENSE"],
};
await writeFile(join(outDir, "package.json"), JSON.stringify(packageJson, null, 2) + "\n");
log(`wrote npm/package.json (dependencies: ${JSON.stringify(packageJson.dependencies)})`);

// Step 4: README and LICENSE.
for (const name of ["README.md", "LICENSE"]) {
  const from = join(root, name);
  if (existsSync(from)) await copyFile(from, join(outDir, name));
  else warn(`${name} not found in ${root}; not copied`);
}

// Step 5: smoke test. The package imports itself by name, which checks
// `exports` and that dependencies resolve from npm/.
const smoke = `await import(${JSON.stringify(PACKAGE_NAME)});` +
  `await import(${JSON.stringify(`${PACKAGE_NAME}/worker`)});`;
const smokeStatus = run("node", ["--input-type=module", "--eval", smoke], { cwd: outDir });
if (smokeStatus !== 0) fail(`importing the built package under Node failed`, smokeStatus);
log(`built npm/ and imported it under Node (${elapsed()})`);

// Step 6: run the tests under Node.
if (flags["no-test"]) {
  log("--no-test given; skipping tests");
  Deno.exit(0);
}
const testsDir = join(outDir, "tests");
const testFiles: string[] = [];
if (existsSync(testsDir)) {
  for await (const file of walk(testsDir)) {
    // Same names `deno test` picks up: *_test.js, *.test.js, test.js.
    if (/(^|[._])test\.js$/.test(basename(file))) {
      testFiles.push(relative(root, file));
    }
  }
}
if (testFiles.length === 0) fail("no test files found in npm/tests/");
testFiles.sort();

log(`node --test --test-concurrency=1 (${testFiles.length} files)`);
const testStatus = run("node", ["--test", "--test-concurrency=1", ...testFiles], {
  env: {
    ...process.env,
    NODE_OPTIONS: [process.env.NODE_OPTIONS, "--enable-source-maps"].filter(Boolean).join(" "),
  },
});
log(`tests ${testStatus === 0 ? "passed" : `failed (exit code ${testStatus})`} (${elapsed()})`);
Deno.exit(testStatus);
