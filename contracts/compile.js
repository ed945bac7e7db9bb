#!/usr/bin/env node
// Compiles contracts/src/*.sol with the npm solc (standard JSON, optimizer 200 runs) and writes
// one artifact per deployable contract to contracts/artifacts/<Name>.json, plus the canonical
// Uniswap V2 factory and pair copied byte-for-byte from @uniswap/v2-core's official build and the
// canonical V3 factory and pool from @uniswap/v3-core's (so their init code hashes are mainnet's).
// Artifacts are committed, so the output is deterministic.
//
//   node contracts/compile.js           write artifacts (and delete ones with no contract left)
//   node contracts/compile.js --check   exit 1 naming each stale, missing or orphan artifact
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const solc = require('solc');

const ROOT = path.resolve(__dirname, '..');
const SRC = path.join(__dirname, 'src');
const OUT = path.join(__dirname, 'artifacts');
const V2_BUILD = path.join(ROOT, 'node_modules', '@uniswap', 'v2-core', 'build');
const V3_BUILD = path.join(ROOT, 'node_modules', '@uniswap', 'v3-core', 'artifacts', 'contracts');
// name -> published build file; V2's is solc standard-JSON output, V3's a Hardhat artifact.
const CANONICAL = {
  UniswapV2Factory: path.join(V2_BUILD, 'UniswapV2Factory.json'),
  UniswapV2Pair: path.join(V2_BUILD, 'UniswapV2Pair.json'),
  UniswapV3Factory: path.join(V3_BUILD, 'UniswapV3Factory.sol', 'UniswapV3Factory.json'),
  UniswapV3Pool: path.join(V3_BUILD, 'UniswapV3Pool.sol', 'UniswapV3Pool.json'),
};
// Cancun: every opcode solc emits for it runs on anvil's default (latest) hardfork and on mainnet.
const SETTINGS = {
  optimizer: { enabled: true, runs: 200 },
  evmVersion: 'cancun',
  outputSelection: {
    '*': { '': ['ast'], '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object'] },
  },
};

const sha256 = (text) => 'sha256:' + crypto.createHash('sha256').update(text).digest('hex');
const hex = (object) => (object.startsWith('0x') ? object : '0x' + object);

/** JSON with keys sorted at every level, two-space indent and a final newline: stable diffs. */
function stableJson(value) {
  const sort = (v) => {
    if (Array.isArray(v)) return v.map(sort);
    if (v && typeof v === 'object') {
      return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sort(v[k])]));
    }
    return v;
  };
  return JSON.stringify(sort(value), null, 2) + '\n';
}

/** Concrete contracts only: interfaces, libraries and abstract bases get no artifact. */
function deployableNames(ast) {
  return ast.nodes
    .filter((n) => n.nodeType === 'ContractDefinition' && n.contractKind === 'contract' && !n.abstract)
    .map((n) => n.name);
}

function compileSources() {
  const files = fs.readdirSync(SRC).filter((f) => f.endsWith('.sol')).sort();
  const sources = Object.fromEntries(
    files.map((f) => [f, { content: fs.readFileSync(path.join(SRC, f), 'utf8') }]),
  );
  const output = JSON.parse(solc.compile(JSON.stringify({ language: 'Solidity', sources, settings: SETTINGS })));
  const problems = output.errors || [];
  for (const p of problems) process.stderr.write(p.formattedMessage);
  if (problems.some((p) => p.severity === 'error')) throw new Error('solc reported errors');

  const artifacts = {};
  for (const file of files) {
    for (const name of deployableNames(output.sources[file].ast)) {
      if (artifacts[name] || name in CANONICAL) {
        throw new Error(`contract name ${name} in ${file} is already taken: artifacts are keyed by name`);
      }
      const c = output.contracts[file][name];
      artifacts[name] = {
        contractName: name,
        abi: c.abi,
        bytecode: hex(c.evm.bytecode.object),
        deployedBytecode: hex(c.evm.deployedBytecode.object),
        sourceHash: sha256(sources[file].content),
      };
    }
  }
  return artifacts;
}

/** The shipped builds, untouched; sourceHash is that of the build file each was copied from. */
function canonicalArtifacts() {
  const artifacts = {};
  for (const [name, file] of Object.entries(CANONICAL)) {
    const text = fs.readFileSync(file, 'utf8');
    const build = JSON.parse(text);
    // solc standard JSON (v2-core) nests the code under evm; Hardhat (v3-core) has it at the top.
    const bytecode = build.evm ? build.evm.bytecode.object : build.bytecode;
    const deployedBytecode = build.evm ? build.evm.deployedBytecode.object : build.deployedBytecode;
    const links = build.linkReferences || (build.evm && build.evm.bytecode.linkReferences) || {};
    if (typeof bytecode !== 'string' || typeof deployedBytecode !== 'string' || Object.keys(links).length) {
      throw new Error(`${file}: no unlinked bytecode in the published build`);
    }
    artifacts[name] = {
      contractName: name,
      abi: build.abi,
      bytecode: hex(bytecode),
      deployedBytecode: hex(deployedBytecode),
      sourceHash: sha256(text),
    };
  }
  return artifacts;
}

function main() {
  const check = process.argv.includes('--check');
  const artifacts = { ...compileSources(), ...canonicalArtifacts() };
  const wanted = Object.fromEntries(Object.entries(artifacts).map(([n, a]) => [`${n}.json`, stableJson(a)]));
  const existing = fs.existsSync(OUT) ? fs.readdirSync(OUT).filter((f) => f.endsWith('.json')) : [];
  const orphans = existing.filter((f) => !(f in wanted)).sort();

  if (check) {
    const stale = Object.keys(wanted).sort().filter((f) => {
      const p = path.join(OUT, f);
      return !fs.existsSync(p) || fs.readFileSync(p, 'utf8') !== wanted[f];
    });
    for (const f of stale) console.error(`stale: contracts/artifacts/${f}`);
    for (const f of orphans) console.error(`orphan: contracts/artifacts/${f} (no contract of that name)`);
    if (stale.length || orphans.length) {
      console.error('run: node contracts/compile.js');
      process.exit(1);
    }
    console.log(`${Object.keys(wanted).length} artifacts up to date`);
    return;
  }

  fs.mkdirSync(OUT, { recursive: true });
  let written = 0;
  for (const [f, text] of Object.entries(wanted)) {
    const p = path.join(OUT, f);
    if (fs.existsSync(p) && fs.readFileSync(p, 'utf8') === text) continue;
    fs.writeFileSync(p, text);
    written += 1;
  }
  for (const f of orphans) fs.unlinkSync(path.join(OUT, f));
  console.log(`${Object.keys(wanted).length} artifacts (${written} written, ${orphans.length} removed) in contracts/artifacts`);
}

try {
  main();
} catch (err) {
  console.error(`compile.js: ${err.message}`);
  process.exit(1);
}
