// Runs bench/stages' WASI module in Node's V8 (the engine Envoy runs the filter in):
//   node --no-warnings --no-liftoff bench/stages/run.mjs bench/stages/target/wasm32-wasip1/release/stages.wasm
// --no-liftoff: optimized code from the start, as proxy-wasm-cpp-host sets V8 up in Envoy (with
// Liftoff, timings depend on when the optimizing tier catches up on a single pinned CPU).
import { readFile } from 'node:fs/promises';
import { WASI } from 'node:wasi';
import { argv } from 'node:process';

const wasi = new WASI({ version: 'preview1', args: argv.slice(2), env: {} });
const module = await WebAssembly.compile(await readFile(argv[2]));
// The library links the proxy-wasm ABI too; nothing here calls it.
const env = {};
for (const i of WebAssembly.Module.imports(module)) {
  if (i.module === 'env') env[i.name] = () => { throw new Error(`proxy-wasm call ${i.name} outside Envoy`); };
}
const instance = await WebAssembly.instantiate(module, { ...wasi.getImportObject(), env });
// The proxy-wasm SDK exports `_initialize` as well; only `_start` is run here.
wasi.start({ exports: { memory: instance.exports.memory, _start: instance.exports._start } });
