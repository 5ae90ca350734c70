"""The on-chain ExperienceRegistry: artifact, client, embedded EVM and JSON-RPC backends."""
