// Compile ExperienceRegistry.sol with the pinned solcjs and print the standard-JSON output.
// Usage: node contracts/compile.cjs  (run from the repository root; solc comes from services/).
const fs = require("fs");
const path = require("path");
const solc = require(path.join(__dirname, "..", "services", "node_modules", "solc"));
const source = fs.readFileSync(path.join(__dirname, "ExperienceRegistry.sol"), "utf8");
const input = {
  language: "Solidity",
  sources: { "ExperienceRegistry.sol": { content: source } },
  settings: {
    evmVersion: "paris",
    optimizer: { enabled: true, runs: 200 },
    outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
  },
};
const output = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (output.errors || []).filter((e) => e.severity === "error");
if (errors.length) {
  for (const e of errors) process.stderr.write(e.formattedMessage + "\n");
  process.exit(1);
}
const contract = output.contracts["ExperienceRegistry.sol"].ExperienceRegistry;
process.stdout.write(
  JSON.stringify({
    compiler: solc.version(),
    settings: input.settings,
    abi: contract.abi,
    bytecode: "0x" + contract.evm.bytecode.object,
    deployedBytecode: "0x" + contract.evm.deployedBytecode.object,
  }),
);
